"""The defenses' maths against peer libraries and closed forms, and the host's BPDA and EOT views."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch
import torchattacks
from torch import nn

from arena import WhiteBox
from arena.evaluation import PLAIN, Evaluation, judge, plan
from arena.integrity import ModelProbe, cross_run_flags, probe_model
from arena.models import cnn
from arena.transforms import straight_through
from arena_plugins.defenses.adversary import cross_entropy_objective, pgd
from arena_plugins.defenses.bit_depth import BitDepthReduction
from arena_plugins.defenses.median_filter import MedianSmoothing
from arena_plugins.defenses.random_noise import GaussianNoise
from arena_plugins.defenses.trades import trades_objective

from .test_fgsm_maths import linear_model


@pytest.fixture
def images():
    return torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_median_smoothing_matches_scipy(images, size):
    rgb = torch.rand(4, 3, 7, 9, generator=torch.Generator().manual_seed(size))
    for x in (images, rgb):
        expected = scipy.ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="reflect")
        assert np.array_equal(MedianSmoothing(size)(x).numpy(), expected)


def test_bit_depth_reduction_is_xu_et_al_squeezer(images):
    for bits in (1, 2, 4):
        levels = 2**bits - 1
        squeezed = BitDepthReduction(bits)(images)
        assert np.array_equal(squeezed.numpy(), np.rint(images.numpy() * levels) / levels)
        assert len(torch.unique(squeezed)) <= levels + 1


def test_bpda_passes_gradients_straight_through(images):
    weights = torch.randn(10, 64, generator=torch.Generator().manual_seed(1))
    classifier = linear_model(weights)
    squeezed = nn.Sequential(BitDepthReduction(1), classifier)
    labels = torch.arange(16) % 10
    plain = WhiteBox(squeezed).gradient(images, labels)
    assert torch.count_nonzero(plain) == 0  # rounding: obfuscated gradients
    with straight_through(squeezed):
        bpda = WhiteBox(squeezed).gradient(images, labels)
        assert torch.equal(squeezed(images), classifier(BitDepthReduction(1)(images)))  # forward unchanged
    # The identity backward: the classifier's gradient at the squeezed point, handed to x.
    expected = WhiteBox(classifier).gradient(BitDepthReduction(1)(images), labels)
    assert torch.allclose(bpda, expected, atol=1e-6) and torch.count_nonzero(bpda) > 0
    assert not squeezed[0].straight_through  # switched off again after the block


def test_eot_gradient_is_the_mean_over_draws(images):
    classifier = cnn((1, 8, 8), 10).eval().requires_grad_(False)
    noisy = nn.Sequential(GaussianNoise(0.2), classifier)
    labels = torch.arange(16) % 10
    torch.manual_seed(3)
    access = WhiteBox(noisy, eot_samples=5)
    eot = access.gradient(images, labels)
    torch.manual_seed(3)
    draws = [WhiteBox(noisy).gradient(images, labels) for _ in range(5)]
    assert torch.allclose(eot, torch.stack(draws).mean(0), atol=1e-7)
    assert access.counter.forward == access.counter.backward == 5 * 16
    assert not torch.allclose(draws[0], draws[1])  # each draw sees fresh noise
    torch.manual_seed(3)
    logits, _ = access.logits_and_gradient(images, labels)
    torch.manual_seed(3)
    single = [WhiteBox(noisy).logits_and_gradient(images, labels)[0] for _ in range(5)]
    assert torch.allclose(logits, torch.stack(single).mean(0), atol=1e-6)  # the expected logits


class Scripted(nn.Module):
    """Returns one-hot logits of a scripted prediction per call, for judging rules."""

    def __init__(self, predictions: list[list[int]]) -> None:
        super().__init__()
        self.predictions = iter(predictions)

    def forward(self, x):
        return nn.functional.one_hot(torch.tensor(next(self.predictions)), 10).float()


def test_a_randomized_answer_is_right_only_if_every_draw_is():
    y = torch.tensor([1, 2, 3, 4])
    draws = [[1, 2, 3, 4], [1, 5, 3, 4], [1, 6, 7, 4]]
    assert judge(Scripted(draws), torch.zeros(4), y, None, 3, 64).tolist() == [1, 5, 7, 4]
    assert judge(Scripted(draws), torch.zeros(4), y, None, 1, 64).tolist() == [1, 2, 3, 4]  # one draw: its arg-max
    # Targeted: the goal is reached if any draw predicts the target.
    target = torch.tensor([0, 6, 0, 0])
    assert judge(Scripted(draws), torch.zeros(4), y, target, 3, 64).tolist() == [1, 6, 7, 4]


def test_evaluations_follow_the_probe_not_the_declaration():
    plain_model = ModelProbe(False, False, 0.0)
    squeezed = ModelProbe(False, False, 1.0, ("BitDepthReduction",), 0.0)
    noisy = ModelProbe(True, False, 0.0)
    assert plan(plain_model, "white-box", "both", 20, 10) == [PLAIN]
    assert plan(squeezed, "white-box", "both", 20, 10) == [Evaluation(bpda=True), PLAIN]
    assert plan(squeezed, "score-query", "both", 20, 10) == [PLAIN]  # no gradients, nothing to approximate
    assert plan(noisy, "white-box", "adaptive", 20, 10) == [Evaluation(eot_samples=20, decision_draws=10)]
    assert plan(noisy, "label-query", "both", 20, 10) == [Evaluation(decision_draws=10), PLAIN]
    assert plan(noisy, "white-box", "plain", 20, 10) == [PLAIN]
    assert plan(noisy, "white-box", "both", 1, 1) == [PLAIN]  # one draw is the plain evaluation


def test_probe_sees_transforms_and_randomness(images):
    classifier = cnn((1, 8, 8), 10).eval().requires_grad_(False)
    labels = torch.arange(16) % 10
    squeezed = probe_model(nn.Sequential(BitDepthReduction(2), classifier), images, labels)
    assert squeezed.nondifferentiable == ("BitDepthReduction",) and not squeezed.randomized
    assert squeezed.zero_gradient_fraction == 1.0 and squeezed.bpda_zero_gradient_fraction == 0.0
    assert [f.code for f in squeezed.flags(white_box=True)] == ["zero-gradients"]
    assert squeezed.flags(white_box=True, bpda=True) == []
    noisy = probe_model(nn.Sequential(GaussianNoise(0.1), classifier), images, labels)
    assert noisy.randomized and noisy.nondifferentiable == () and noisy.bpda_zero_gradient_fraction is None


def test_training_pgd_matches_torchattacks(images):
    model = cnn((1, 8, 8), 10).eval()  # trainable weights, as during adversarial training
    labels = torch.arange(16) % 10
    ours = pgd(model, images, cross_entropy_objective(labels), eps=0.2, step_size=0.05, steps=7)
    theirs = torchattacks.PGD(model, eps=0.2, alpha=0.05, steps=7, random_start=False)(images, labels)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert (ours - images).abs().max() <= 0.2 + 1e-6 and ours.min() >= 0 and ours.max() <= 1
    assert all(p.grad is None for p in model.parameters())  # the inner maximisation leaves weights alone


def test_training_pgd_reaches_the_closed_form_corner():
    # For a linear two-class model the loss of class 0 grows fastest along w1 - w0, and the
    # maximiser over the L-inf ball is the corner x + eps * sign(w1 - w0).
    weights = torch.randn(2, 64, generator=torch.Generator().manual_seed(2))
    x, y = torch.full((3, 1, 8, 8), 0.5), torch.zeros(3, dtype=torch.long)
    x_adv = pgd(linear_model(weights), x, cross_entropy_objective(y), eps=0.1, step_size=0.03, steps=10)
    corner = x + 0.1 * (weights[1] - weights[0]).sign().view(1, 1, 8, 8)
    assert torch.allclose(x_adv, corner, atol=1e-6)


def test_trades_objective_is_cross_entropy_plus_beta_kl():
    generator = torch.Generator().manual_seed(4)
    logits, adversarial = torch.randn(5, 10, generator=generator), torch.randn(5, 10, generator=generator)
    y = torch.tensor([0, 3, 5, 7, 9])
    clean_p = torch.softmax(logits.double(), 1).numpy()
    adv_p = torch.softmax(adversarial.double(), 1).numpy()
    kl = np.mean([scipy.stats.entropy(p, q) for p, q in zip(clean_p, adv_p)])  # KL(f(x) || f(x'))
    ce = -np.mean(np.log(clean_p[np.arange(5), y.numpy()]))
    for beta in (0.0, 1.0, 6.0):
        assert trades_objective(logits, adversarial, y, beta).item() == pytest.approx(ce + beta * kl, rel=1e-5)


def test_cross_run_flags_compare_like_with_like():
    def row(run_id, attack, robust, access="white-box", eps=0.2, **evaluation):
        steps = {"pgd": {"steps": 40}, "fgsm": {}}.get(attack, {})
        return {"run_id": run_id, "status": "ok", "dataset": "digits", "defense_key": "d", "defense_label": "d",
                "attack_label": attack, "attack_params": steps, "attack_access": access, "norm": "linf", "eps": eps,
                "targeted": False, "n": 100, "robust_accuracy": robust, "evaluation": {**PLAIN.as_dict(), **evaluation}}

    bpda = {"mode": "adaptive", "bpda": True}
    rows = [row(1, "pgd", 0.90), row(2, "pgd", 0.40, **bpda), row(3, "noise", 0.60, access="zero-query"),
            # Sweeps are per evaluation: plain at eps 0.3 is above BPDA at 0.2, which says nothing.
            row(4, "pgd", 0.95, eps=0.1), row(5, "pgd", 0.80, eps=0.3)]
    flags = cross_run_flags(rows)
    assert {k: [f.code for f in v] for k, v in flags.items()} == {1: ["blackbox-beats-whitebox"]}
    assert "gradient masking suspected in the defense" in flags[1][0].message
    # A black-box attack beating single-step FGSM is expected: nothing to flag.
    assert cross_run_flags([row(1, "fgsm", 0.90), row(3, "noise", 0.60, access="zero-query")]) == {}
    # The host's word on an attack's steps wins over the `steps` convention.
    declared = {**row(1, "fgsm", 0.90), "attack_iterative": True}
    assert set(cross_run_flags([declared, row(3, "noise", 0.60, access="zero-query")])) == {1}
    eot = {"mode": "adaptive", "eot_samples": 20, "decision_draws": 10}
    # A single-draw judgement and a ten-draw one are not compared.
    assert cross_run_flags([row(1, "pgd", 0.5, **eot), row(2, "square", 0.3, access="score-query")]) == {}
    ten_draws = row(2, "square", 0.3, access="score-query", mode="adaptive", decision_draws=10)
    assert set(cross_run_flags([row(1, "pgd", 0.5, **eot), ten_draws])) == {1}
