"""Training recipes for 32x32 colour networks: SGD with (Nesterov) momentum, the piecewise and
cosine schedules, random crops and flips of each mini-batch, mixed precision on CUDA, and the
published recipes the training defenses select by name (``-p pgd-at.recipe=rice2020``)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from arena import Splits
from arena.errors import InvalidInputError
from arena.models import build_classifier
from arena.training import (AUGMENTATIONS, LR_SCHEDULES, Recipe, augment_batch, cosine, fit_classifier,
                            piecewise)

# -- schedules ---------------------------------------------------------------------------------


class Scalar(nn.Module):
    """One weight w; its logits are w for every class, and the test loss makes dL/dw = 1."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(value, dtype=torch.float64))

    def forward(self, x):
        return self.w.expand(len(x), 2)


def _tiny_splits(n: int, shape=(1, 2, 2)) -> Splits:
    x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(0))
    return Splits(x, torch.arange(n) % 2, x[:4], torch.arange(4) % 2)


def _rates(recipe: Recipe, n: int) -> list[float]:
    """The learning rate of every step of ``recipe``: SGD without momentum on a loss of slope 1
    moves w down by exactly the rate of the step."""
    model = Scalar()
    weights = []

    def loss(model, x, y):
        weights.append(float(model.w.detach()))
        return model.w * 1.0

    fit_classifier(model, _tiny_splits(n), recipe, seed=0, loss=loss)
    weights.append(float(model.w.detach()))
    return [before - after for before, after in zip(weights, weights[1:])]


def test_piecewise_and_cosine_are_their_closed_forms():
    rice = piecewise((0.5, 0.75), 0.1)
    assert [rice(done) for done in (0.0, 0.4999, 0.5, 0.7499, 0.75, 1.0)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert LR_SCHEDULES["piecewise"](0.6) == pytest.approx(0.1)  # Rice et al.'s milestones by default
    wrn = piecewise((0.3, 0.6, 0.8), 0.2)
    assert wrn(0.29) == 1 and wrn(0.3) == pytest.approx(0.2) and wrn(0.7) == pytest.approx(0.04)
    assert wrn(0.9) == pytest.approx(0.008)
    assert cosine(0.0) == 1.0 and cosine(0.5) == pytest.approx(0.5) and cosine(1.0) == pytest.approx(0.0)
    assert cosine(0.25) == pytest.approx((1 + math.sqrt(0.5)) / 2)


def test_every_step_trains_at_the_schedule_value_halfway_through_it():
    # 4 epochs of 5 steps: the milestones 0.5 and 0.75 fall on the first steps of epochs 3 and 4.
    recipe = Recipe(epochs=4, lr=0.1, batch_size=2, optimizer="sgd", momentum=0.0, lr_schedule="piecewise",
                    milestones=(0.5, 0.75), lr_decay=0.1)
    rates = _rates(recipe, n=10)
    assert len(rates) == 20
    assert rates[:10] == pytest.approx([0.1] * 10)
    assert rates[10:15] == pytest.approx([0.01] * 5)
    assert rates[15:] == pytest.approx([0.001] * 5)
    cosine_rates = _rates(Recipe(epochs=4, lr=0.1, batch_size=2, optimizer="sgd", momentum=0.0,
                                 lr_schedule="cosine"), n=10)
    assert cosine_rates == pytest.approx([0.1 * cosine((k + 0.5) / 20) for k in range(20)])
    assert cosine_rates[0] == pytest.approx(0.1, rel=0.01) and cosine_rates[-1] < 0.001
    assert cosine_rates[9] > 0.05 > cosine_rates[10]  # lr / 2 halfway


# -- the optimiser -----------------------------------------------------------------------------


def test_sgd_with_nesterov_momentum_and_weight_decay_is_the_hand_computed_update():
    """Two steps on L = w (slope 1) from w = 1: g = 1 + wd * w, b = mu * b + g, w -= lr * (g + mu * b)."""
    lr, mu, wd = 0.1, 0.9, 5e-4
    model = Scalar(1.0)
    recipe = Recipe(epochs=2, lr=lr, batch_size=4, optimizer="sgd", momentum=mu, nesterov=True, weight_decay=wd)
    fit_classifier(model, _tiny_splits(4), recipe, seed=0, loss=lambda model, x, y: model.w * 1.0)
    w, buffer = 1.0, 0.0
    for _ in range(2):
        g = 1.0 + wd * w
        buffer = mu * buffer + g
        w -= lr * (g + mu * buffer)
    assert float(model.w.detach()) == pytest.approx(w, abs=1e-12)
    plain = Scalar(1.0)  # without Nesterov: w -= lr * b
    fit_classifier(plain, _tiny_splits(4), Recipe(epochs=2, lr=lr, batch_size=4, optimizer="sgd", momentum=mu),
                   seed=0, loss=lambda model, x, y: model.w * 1.0)
    assert float(plain.w.detach()) == pytest.approx(1.0 - lr * 1.0 - lr * (mu * 1.0 + 1.0), abs=1e-12)


def test_sgd_training_is_torch_sgd_on_the_same_batches():
    splits = Splits(torch.rand(48, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(48) % 10,
                    torch.rand(8, 3, 8, 8), torch.arange(8) % 10)
    torch.manual_seed(0)
    model = build_classifier("wrn-10-1", (3, 8, 8), 10)
    reference = copy.deepcopy(model)
    recipe = Recipe(epochs=2, lr=0.05, batch_size=16, optimizer="sgd", momentum=0.9, nesterov=True,
                    weight_decay=5e-4, lr_schedule="piecewise", milestones=(0.5,), lr_decay=0.2)
    fit_classifier(model, splits, recipe, seed=3)

    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    shuffle = torch.Generator().manual_seed(3)
    for epoch in range(2):
        reference.train()
        order = torch.randperm(48, generator=shuffle)
        for group in optimizer.param_groups:
            group["lr"] = 0.05 * (0.2 if epoch else 1.0)  # the milestone 0.5 is the start of epoch 2
        for start in range(0, 48, 16):
            index = order[start : start + 16]
            optimizer.zero_grad()
            F.cross_entropy(reference(splits.x_train[index]), splits.y_train[index]).backward()
            optimizer.step()
    for (name, mine), theirs in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.allclose(mine.double(), theirs.double(), atol=1e-6), name


@pytest.mark.parametrize("change, message", [
    (dict(optimizer="sgd", momentum=0.0, nesterov=True), "nesterov=true needs optimizer=sgd with momentum above 0"),
    (dict(nesterov=True), "nesterov=true needs optimizer=sgd with momentum above 0 (got optimizer=adam"),
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop': use one of adam, sgd"),
    (dict(lr_schedule="step"), "unknown learning-rate schedule 'step': use one of constant, cyclic, piecewise, cosine"),
    (dict(milestones=(0.75, 0.5)), "milestones=[0.75, 0.5]: give increasing fractions of training in (0, 1)"),
    (dict(milestones=(0.5, 1.5)), "milestones=[0.5, 1.5]: give increasing fractions"),
    (dict(augment="flip"), "unknown augmentation 'flip': use one of none, crop, crop-flip"),
    (dict(amp="fp8"), "unknown precision 'fp8': use one of off, bf16, fp16"),
])
def test_a_recipe_fit_cannot_follow_is_one_clear_line(change, message):
    with pytest.raises(InvalidInputError) as caught:
        fit_classifier(Scalar(), _tiny_splits(4), Recipe(epochs=1, lr=0.1, batch_size=2, **change), seed=0)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# -- augmentation ------------------------------------------------------------------------------


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` moved down by dy and right by dx, zeros shifted in."""
    out = torch.zeros_like(image)
    height, width = image.shape[-2:]
    out[..., max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = \
        image[..., max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)]
    return out


def _moves(original: torch.Tensor, augmented: torch.Tensor, padding: int = 4) -> list[tuple[int, int, bool]]:
    """Every (dy, dx, flipped) that turns ``original`` into ``augmented`` exactly."""
    return [(dy, dx, flip) for dy in range(-padding, padding + 1) for dx in range(-padding, padding + 1)
            for flip in (False, True)
            if torch.equal(_shifted(original, dy, dx).flip(-1) if flip else _shifted(original, dy, dx), augmented)]


def _images(n: int = 200) -> torch.Tensor:
    """Distinct, non-zero, asymmetric pixels: no two moves of an image give the same picture."""
    return (torch.arange(n * 3 * 8 * 8, dtype=torch.float32).reshape(n, 3, 8, 8) + 1) / (n * 3 * 8 * 8)


@pytest.mark.parametrize("mode", ["crop", "crop-flip"])
def test_each_augmented_image_is_a_shifted_or_flipped_copy_of_its_own(mode):
    x = _images()
    kept = x.clone()
    out = augment_batch(x, mode, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and torch.equal(x, kept)  # the input is left alone
    moves = [_moves(x[i], out[i]) for i in range(len(x))]
    assert all(len(found) == 1 for found in moves)  # exactly one shift (and flip) explains each image
    found = [m[0] for m in moves]
    flips = {flip for _, _, flip in found}
    assert flips == ({False} if mode == "crop" else {False, True})  # `crop` never flips
    assert {dy for dy, _, _ in found} == set(range(-4, 5)) == {dx for _, dx, _ in found}
    if mode == "crop-flip":
        assert 60 < sum(flip for _, _, flip in found) < 140  # about half of 200


def test_augmentation_is_reproducible_from_its_seed_and_none_is_the_identity():
    x = _images(64)
    first = augment_batch(x, "crop-flip", torch.Generator().manual_seed(5))
    assert torch.equal(first, augment_batch(x, "crop-flip", torch.Generator().manual_seed(5)))
    assert not torch.equal(first, augment_batch(x, "crop-flip", torch.Generator().manual_seed(6)))
    assert augment_batch(x, "none", torch.Generator().manual_seed(5)) is x
    assert AUGMENTATIONS == ("none", "crop", "crop-flip")


def test_training_with_augmentation_is_reproducible_and_leaves_the_batch_order_alone():
    splits = Splits(torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(2)), torch.arange(32) % 10,
                    torch.rand(8, 3, 8, 8), torch.arange(8) % 10)
    seen: dict[str, list] = {}

    def train(augment: str) -> nn.Module:
        torch.manual_seed(0)
        model = build_classifier("cnn", (3, 8, 8), 10)
        batches = seen.setdefault(augment, [])

        def loss(model, x, y):
            batches.append((x.clone(), y.clone()))
            return F.cross_entropy(model(x), y)

        fit_classifier(model, splits, Recipe(epochs=2, lr=1e-3, batch_size=8, augment=augment), seed=4, loss=loss)
        return model

    plain, augmented, again = train("none"), train("crop-flip"), train("crop-flip")
    assert all(torch.equal(a, b) for a, b in zip(augmented.state_dict().values(), again.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), augmented.state_dict().values()))
    # The same images in the same order (labels identical), each a shifted or flipped copy of its own.
    for (x_plain, y_plain), (x_aug, y_aug) in zip(seen["none"], seen["crop-flip"][: len(seen["none"])]):
        assert torch.equal(y_plain, y_aug)
        assert all(_moves(x_plain[i], x_aug[i]) for i in range(len(x_plain)))


# -- mixed precision ---------------------------------------------------------------------------


def test_mixed_precision_does_nothing_on_a_cpu_and_says_so():
    splits = _tiny_splits(16, shape=(3, 8, 8))

    def train(amp: str):
        torch.manual_seed(0)
        model = build_classifier("cnn", (3, 8, 8), 2)
        history = fit_classifier(model, splits, Recipe(epochs=1, lr=1e-3, batch_size=4, amp=amp), seed=0)
        return model, history

    (off, off_history), (bf16, bf16_history), (fp16, _) = train("off"), train("bf16"), train("fp16")
    for other in (bf16, fp16):
        assert all(torch.equal(a, b) for a, b in zip(off.state_dict().values(), other.state_dict().values()))
    assert off_history[0]["amp"] == bf16_history[0]["amp"] == "off"  # what ran: float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; CI machines have none")
@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_on_cuda_autocasts_the_loss_and_records_it(amp, dtype):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    device = torch.device("cuda")
    generator = torch.Generator().manual_seed(0)
    splits = Splits(*(t.to(device) for t in (torch.rand(64, 3, 32, 32, generator=generator), torch.arange(64) % 10,
                                             torch.rand(16, 3, 32, 32, generator=generator), torch.arange(16) % 10)))
    torch.manual_seed(0)
    model = build_classifier("wrn-10-1", (3, 32, 32), 10).to(device)
    before = copy.deepcopy(model.state_dict())
    logits_types = []

    def loss(model, x, y):
        logits = model(x)
        logits_types.append(logits.dtype)
        return F.cross_entropy(logits, y)

    history = fit_classifier(model, splits, Recipe(epochs=2, lr=0.05, batch_size=16, optimizer="sgd", amp=amp,
                                                   augment="crop-flip"), seed=0, loss=loss)
    assert set(logits_types) == {dtype}
    assert [record["amp"] for record in history] == [amp, amp]
    assert all(math.isfinite(record["loss"]) for record in history)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32
    assert not torch.equal(before["1.conv1.weight"], model.state_dict()["1.conv1.weight"])  # it trained


# -- published recipes in the training defenses ------------------------------------------------

RECIPES = {
    ("standard", "zagoruyko2016"): dict(
        architecture="wrn-28-10", epochs=200, lr=0.1, batch_size=128, optimizer="sgd", momentum=0.9, nesterov=True,
        weight_decay=5e-4, lr_schedule="piecewise", milestones=[59 / 200, 119 / 200, 159 / 200], lr_decay=0.2,
        amp="off"),
    ("pgd-at", "rice2020"): dict(
        architecture="preact-resnet18", epochs=200, lr=0.1, batch_size=128, optimizer="sgd", momentum=0.9,
        nesterov=False, weight_decay=5e-4, lr_schedule="piecewise", milestones=[0.5, 0.75], lr_decay=0.1, steps=10,
        step_size=None, eps=None, random_start=True, amp="off"),
    ("trades", "zhang2019"): dict(
        architecture="wrn-34-10", epochs=76, lr=0.1, batch_size=128, optimizer="sgd", momentum=0.9, nesterov=False,
        weight_decay=2e-4, lr_schedule="piecewise", milestones=[74 / 76], lr_decay=0.1, beta=6.0, eps=0.031,
        steps=10, step_size=0.007, amp="off"),
    ("fast-at", "wong2020"): dict(
        architecture="preact-resnet18", epochs=15, lr=0.2, batch_size=128, optimizer="sgd", momentum=0.9,
        nesterov=False, weight_decay=5e-4, lr_schedule="cyclic", alpha=None, eps=None, amp="fp16"),
}


def _defense(name: str):
    from arena.plugins import load_registry

    return load_registry().get("defense", name)


@pytest.mark.parametrize("name, recipe", list(RECIPES))
def test_a_recipe_name_fills_the_hyperparameters_and_an_explicit_value_overrides_it(name, recipe):
    info = _defense(name)
    recorded = info.create({"recipe": recipe}).hyperparameters()
    assert recorded["recipe"] == recipe and recorded["augment"] is None  # the dataset decides
    assert {key: recorded[key] for key in RECIPES[name, recipe]} == RECIPES[name, recipe]
    given = info.create({"recipe": recipe, "epochs": 1, "architecture": "wrn-10-1", "augment": "crop"})
    assert (given.epochs, given.architecture, given.augment) == (1, "wrn-10-1", "crop")
    assert given.lr == RECIPES[name, recipe]["lr"] and given.optimizer == "sgd"
    # The default recipe is the signature's defaults; a recipe only names values, so it is not in the model key.
    assert info.create().hyperparameters() == {k: list(v) if isinstance(v, tuple) else v
                                               for k, v in info.cls.parameter_defaults().items()}
    assert "recipe" not in given.identity() and given.identity()["epochs"] == 1


def test_the_digit_recipes_stay_adam_without_augmentation():
    from arena_plugins.datasets.digits import Digits

    for name in ("standard", "pgd-at", "fast-at", "trades"):
        plugin = _defense(name).create()
        plugin.resolve(Digits())
        assert (plugin.optimizer, plugin.augment, plugin.amp, plugin.weight_decay) == ("adam", "none", "off", 0.0)


@pytest.mark.parametrize("name, recipe", list(RECIPES))
def test_the_defense_hands_its_recipe_to_fit(name, recipe, monkeypatch):
    """What ``ctx.fit`` gets from each recipe, down to the optimiser that steps."""
    import arena.training
    from arena.training import BuildContext
    from arena_plugins.datasets.official import CIFAR10, SVHN

    got = {}
    monkeypatch.setattr(arena.training, "fit_classifier", lambda model, splits, recipe, **kwargs: got.update(
        recipe=recipe, optimizer=recipe.make_optimizer([nn.Parameter(torch.zeros(1))])) or [])
    for dataset, augment in ((CIFAR10(), "crop-flip"), (SVHN(), "crop")):
        plugin = _defense(name).create({"recipe": recipe})
        plugin.resolve(dataset)
        splits = _tiny_splits(8, shape=(3, 32, 32))
        plugin.train(None, BuildContext(dataset, splits, torch.device("cpu"), seed=0))
        expected = RECIPES[name, recipe]
        used = got["recipe"]
        assert (used.epochs, used.lr, used.batch_size, used.weight_decay) == \
            (expected["epochs"], expected["lr"], expected["batch_size"], expected["weight_decay"])
        assert (used.lr_schedule, used.amp, used.augment) == (expected["lr_schedule"], expected["amp"], augment)
        if used.lr_schedule == "piecewise":
            assert list(used.milestones) == expected["milestones"] and used.lr_decay == expected["lr_decay"]
        optimizer = got["optimizer"]
        assert type(optimizer) is torch.optim.SGD
        assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"] == expected["nesterov"]
        assert optimizer.defaults["weight_decay"] == expected["weight_decay"]


# -- end to end --------------------------------------------------------------------------------


@pytest.fixture
def tiny_cifar10(tmp_path, monkeypatch):
    """CIFAR-10 in its official format, 200 training and 40 test images, made here."""
    from arena import data
    from arena.data import OfficialFile, md5sum

    from . import official_files

    folder = tmp_path / "data" / "cifar10"
    official_files.cifar_archive(folder, per_batch=40)
    monkeypatch.setenv("ARENA_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("ARENA_DATA_VERIFY", raising=False)
    monkeypatch.setitem(data.FILES, "cifar10", tuple(
        OfficialFile(f.name, md5sum(folder / f.name), f.urls) for f in data.FILES["cifar10"]))


def test_a_wide_resnet_trains_with_sgd_and_a_recipe_through_arena_run(arena, tiny_cifar10, arena_home):
    import json

    small = ["-p", "standard.architecture=wrn-10-1", "-p", "standard.epochs=1", "-p", "standard.batch_size=50"]
    sgd = arena("run", "-a", "fgsm", "-d", "standard", "--dataset", "cifar10", "--n", "8", *small,
                "-p", "standard.optimizer=sgd", "-p", "standard.nesterov=true", "-p", "standard.lr=0.05",
                "-p", "standard.lr_schedule=cosine", "-p", "standard.weight_decay=5e-4")
    assert sgd.exit_code == 0, sgd.output + sgd.stderr
    recipe = arena("run", "-a", "fgsm", "-d", "standard", "--dataset", "cifar10", "--n", "8", *small,
                   "-p", "standard.recipe=zagoruyko2016", "-p", "standard.augment=crop")
    assert recipe.exit_code == 0, recipe.output + recipe.stderr
    rows = {row["defense_params"]["recipe"]: row for row in arena.json("results", "--json")}
    assert set(rows) == {"arena", "zagoruyko2016"}
    mine, theirs = rows["arena"]["defense_params"], rows["zagoruyko2016"]["defense_params"]
    assert {k: mine[k] for k in ("architecture", "epochs", "optimizer", "nesterov", "lr", "lr_schedule", "augment",
                                 "amp")} == dict(architecture="wrn-10-1", epochs=1, optimizer="sgd", nesterov=True,
                                                 lr=0.05, lr_schedule="cosine", augment="crop-flip", amp="off")
    assert {k: theirs[k] for k in ("architecture", "epochs", "batch_size", "optimizer", "nesterov", "lr",
                                   "weight_decay", "lr_schedule", "lr_decay", "augment")} == dict(
        architecture="wrn-10-1", epochs=1, batch_size=50, optimizer="sgd", nesterov=True, lr=0.1, weight_decay=5e-4,
        lr_schedule="piecewise", lr_decay=0.2, augment="crop")
    assert "recipe=zagoruyko2016" in rows["zagoruyko2016"]["defense_label"]
    for row in rows.values():
        record = json.loads((arena_home / "models" / f"{row['defense_key']}.json").read_text())
        (epoch,) = record["history"]
        assert epoch["amp"] == "off" and math.isfinite(epoch["loss"]) and epoch["forward_passes"] >= 200
