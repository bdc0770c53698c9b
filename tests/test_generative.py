"""The generative track through the CLI on digits: train, sample, score, store, rank, show.

Every generator is trained once for the session (small sizes and few epochs, so the suite stays
fast) along with an untrained copy of itself (``epochs=0``); the tests read what was stored.

The claims run on seed 0. Measured with the same two commands and ``--seeds 0,1,2`` on a 2-core CPU
(torch 2.13.0+cpu), the upper end of the trained model's 95% FID interval against the lower end of
its untrained copy's, the Inception Score and bits/dim (uniform: 4.09), seeds 0 / 1 / 2:

=================  =======================  =================  ==================  ==================
generator          trained FID upper bound  untrained FID low  IS                  bits/dim
=================  =======================  =================  ==================  ==================
dcgan              47.4 / 46.2 / 71.6       393 / 392 / 393    4.93 / 5.27 / 4.77  --
gan                60.8 / 50.0 / 51.4       365 / 366 / 370    5.69 / 5.76 / 6.03  --
image-transformer  64.7 / 64.2 / 79.0       128 / 126 / 130    4.06 / 4.08 / 4.14  2.30 / 2.30 / 2.30
pixelcnn           49.9 / 36.6 / 44.2       116 / 123 / 123    4.75 / 5.37 / 5.20  2.08 / 2.08 / 2.09
pixelrnn           48.0 / 53.5 / 54.3       115 / 125 / 123    4.85 / 4.89 / 4.72  2.13 / 2.12 / 2.12
vae                23.1 / 20.4 / 20.2       99 / 96 / 92       5.50 / 5.87 / 5.64  1.98 / 1.98 / 1.98
=================  =======================  =================  ==================  ==================

Every bound holds on every seed with room: the trained upper bound at least 51 FID below the
untrained lower one, IS at least 4.06 (bound: 2.5), bits/dim at least 0.78 below the bound of
uniform minus one (3.09). The IWAE-100 bound is below the ELBO on every seed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from filelock import FileLock

from arena.artifacts import check_artifact, local_path
from arena.cli import cli
from arena.generation import GenerativeScorer, quantise
from arena.generative_metrics import fid
from arena import Arena, Generator, Request, hookimpl
from arena.host import Host
from arena.plugins import Source, load_registry, set_registry
from arena.progress import quiet
from arena.store import open_store

AUTOREGRESSIVE = ("image-transformer", "pixelcnn", "pixelrnn")
GENERATORS = ("dcgan", "gan", *AUTOREGRESSIVE, "vae")
SAMPLES = 200
#: Sizes for the test suite; the defaults are larger (see the README's results).
SMALL = {
    "pixelcnn": {"channels": 32, "blocks": 3, "head": 64, "epochs": 8, "lr": 0.003},
    "pixelrnn": {"channels": 32, "layers": 1, "head": 64, "epochs": 8, "lr": 0.003},
    "image-transformer": {"dim": 32, "layers": 2, "feedforward": 64, "epochs": 8, "lr": 0.002},
    "vae": {"hidden": 200, "epochs": 20},
    "gan": {"epochs": 30, "lr": 0.002},
    "dcgan": {"width": 32, "epochs": 15},
}


def _flags(epochs: int | None = None) -> list[str]:
    flags = []
    for name, params in SMALL.items():
        for key, value in params.items():
            flags += ["-p", f"{name}.{key}={epochs if key == 'epochs' and epochs is not None else value}"]
    return flags


def _invoke(home: Path, *args: str):
    return CliRunner().invoke(cli, list(args), env={"ARENA_HOME": str(home), "ARENA_LOAD_PLUGINS": ""},
                              catch_exceptions=False)


@pytest.fixture(scope="session")
def generative(arena_home):
    """The results database holding a trained and an untrained run of every generator.

    One test uses it, so one xdist worker trains while the other runs the rest of the suite;
    the lock would still make a second user wait for the stored results, not train again.
    """
    path = arena_home / "generative.db"
    url = f"sqlite:///{path}"
    with FileLock(f"{path}.lock"):
        for flags in (_flags(), _flags(epochs=0)):
            result = _invoke(arena_home, "run", "--generator", "all", "--samples", str(SAMPLES), *flags, "--db", url)
            assert result.exit_code == 0, result.output + result.stderr
    rows = json.loads(_invoke(arena_home, "results", "--json", "--db", url).stdout)
    trained = {r["generator"]: r for r in rows if r["generator_params"]["epochs"] > 0}
    untrained = {r["generator"]: r for r in rows if r["generator_params"]["epochs"] == 0}
    return url, trained, untrained


@pytest.fixture(scope="module")
def reference(arena_home, tmp_path_factory):
    """The digits reference classifier and its features of the training split (from the cache)."""
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('ref') / 'r.db'}")
    host = Host(load_registry(), arena_home, reporter=quiet())
    track = GenerativeScorer(host, store)
    data = host.dataset("digits")
    return track.reference(data), track.reference_features(data), data


def test_generative_track_end_to_end(generative, reference, arena_home, monkeypatch):
    """Every generator trained, scored and stored; the likelihood models beat the uniform
    baseline; trained models beat untrained copies of themselves and noise; the leaderboard,
    `arena results` and `arena show` cover the runs; the same command again reuses them."""
    url, trained, untrained = generative
    classifier, train_features, data = reference

    # Stored with the reference classifier's hash, the images and the timings.
    assert set(trained) == set(untrained) == set(GENERATORS)
    hashes = {row["classifier_sha256"] for row in [*trained.values(), *untrained.values()]}
    assert len(hashes) == 1 and len(hashes.pop()) == 64
    for name, row in trained.items():
        assert row["status"] == "ok" and row["track"] == "generative" and row["dataset"] == "digits"
        assert row["samples"] == SAMPLES and row["reference_n"] == 1437
        assert row["classifier_accuracy"] > 0.95
        assert row["fid_low"] <= row["fid"] <= row["fid_high"]
        assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1 and row["kid"] is not None
        assert row["train_seconds"] > 0 and row["provenance"]["checkpoint_sha256"]
        assert row["artifacts"]["samples"].startswith("sha256/")  # in the artifact store, by content
        check_artifact(row["artifacts"]["samples"])
        assert ("completions" in row["artifacts"]) == (name in AUTOREGRESSIVE)
    assert trained["gan"]["likelihood"] is None and trained["gan"]["bits_per_dim"] is None
    assert trained["vae"]["likelihood"] == "bound" and trained["pixelcnn"]["likelihood"] == "exact"

    # Every likelihood model beats a uniform model over the 17 levels by a wide margin.
    for name in (*AUTOREGRESSIVE, "vae"):
        row = trained[name]
        assert row["uniform_bits_per_dim"] == pytest.approx(math.log2(17))
        assert row["bits_per_dim"] < row["uniform_bits_per_dim"] - 1.0, name
        assert row["likelihood_n"] == 360  # the whole test split

    # IWAE-100 is a tighter lower bound than the ELBO (smaller in bits/dim) and the one shown.
    bounds = trained["vae"]["likelihoods"]
    assert set(bounds) == {"elbo", "iwae-100"} and bounds["iwae-100"] < bounds["elbo"]
    assert trained["vae"]["bits_per_dim"] == bounds["iwae-100"]

    # Training helps: each FID beats an untrained copy of the model and uniform noise, beyond
    # the bootstrap intervals; the samples spread over the classes (IS: 1 = one class, 10 = max).
    noise = quantise(torch.rand(SAMPLES, 1, 8, 8, generator=torch.Generator().manual_seed(0)), 17)
    noise_fid = fid(train_features, classifier.embed(noise)[0])
    for name in GENERATORS:
        assert trained[name]["fid"] < untrained[name]["fid"], name
        assert trained[name]["fid_high"] < min(untrained[name]["fid_low"], noise_fid), name
        assert trained[name]["inception_score"] > 2.5, name

    # The leaderboard ranks by FID against the test split under one classifier, the flagged
    # results (untrained copies no better than noise) listed unranked; results and show cover the runs.
    boards = json.loads(_invoke(arena_home, "leaderboard", "--format", "json", "--db", url).stdout)
    (board,) = [b for b in boards if b["table"] == "generators"]
    assert board["dataset"] == "digits" and board["classifier_key"] == trained["vae"]["classifier_key"]
    assert board["samples"] == SAMPLES and len(board["entries"]) == 2 * len(GENERATORS)
    ranked = [entry for entry in board["entries"] if entry["rank"] is not None]
    assert [e["rank"] for e in ranked] == list(range(1, len(ranked) + 1))
    assert [e["fid_test"] for e in ranked] == sorted(e["fid_test"] for e in ranked)
    assert all(e["suspect"] and e["flags"] for e in board["entries"] if e["rank"] is None)
    assert {e["run_id"] for e in ranked} >= {trained[name]["run_id"] for name in GENERATORS}
    vae = next(e for e in board["entries"] if e["run_id"] == trained["vae"]["run_id"])
    assert vae["likelihood"] == "bound" and set(vae["likelihoods"]) == {"elbo", "iwae-100"} and vae["fid_test_interval"]
    markdown = _invoke(arena_home, "leaderboard", "--format", "md", "--db", url).stdout
    assert ("| # | generator | bits/dim | kind | FID test | 95% CI | FID train | KID test | prec. | recall | density | "
            "coverage | copies | IS |") in markdown
    assert "Generators — digits · n=200 · reference classifier" in _invoke(arena_home, "leaderboard", "--db", url).stdout
    shown = _invoke(arena_home, "show", str(trained["pixelcnn"]["run_id"]), "--db", url).stdout
    assert "classifier_sha256" in shown and "bits_per_dim" in shown and "Training" in shown
    assert f"Image (completions): {local_path(trained['pixelcnn']['artifacts']['completions'])}" in shown
    listing = _invoke(arena_home, "results", "--db", url).stdout
    assert "Stored generative results" in listing and "image-transformer" in listing

    # The baselines: the memoriser (exact copies, and with light noise) holds the best FID
    # against the training split and ranks nowhere; uniform noise is beaten by every trained
    # generator against the test split; no trained generator is flagged as memorised.
    for args in (["-g", "memorizer,uniform"], ["-g", "memorizer", "-p", "memorizer.noise=0.05"]):
        ran = _invoke(arena_home, "run", *args, "--samples", str(SAMPLES), "--db", url)
        assert ran.exit_code == 0, ran.output + ran.stderr
    rows = json.loads(_invoke(arena_home, "results", "--json", "--db", url).stdout)
    baselines = {r["generator_label"]: r for r in rows if r["generator"] in ("memorizer", "uniform")}
    copies, noisy, uniform = baselines["memorizer"], baselines["memorizer(noise=0.05)"], baselines["uniform"]
    for memoriser in (copies, noisy):
        assert "memorised" in [flag["code"] for flag in memoriser["flags"]], memoriser["flags"]
        assert memoriser["memorised_pixels"] > memoriser["heldout_memorised_pixels"] + 0.5
    assert copies["fid"] < min(r["fid"] for r in rows if r["generator"] not in ("memorizer", "uniform"))
    for name in GENERATORS:
        assert trained[name]["fid_test"] < uniform["fid_test"], name
        assert "memorised" not in [flag["code"] for flag in trained[name]["flags"]], name
        assert trained[name]["memorised_pixels"] <= 0.01, name  # held-out images: 0 in pixels
    boards = json.loads(_invoke(arena_home, "leaderboard", "--format", "json", "--db", url).stdout)
    (board,) = [b for b in boards if b["table"] == "generators"]
    unranked = {e["generator"] for e in board["entries"] if e["rank"] is None}
    assert {"memorizer", "memorizer(noise=0.05)", "uniform"} <= unranked
    assert "--batch-size" in copies["command"]

    # The same command again trains and samples nothing.
    registry = load_registry()
    for name in GENERATORS:
        cls = registry.get("generator", name).cls
        for method in ("train", "sample"):
            monkeypatch.setattr(cls, method, lambda *a, **k: pytest.fail("a stored result must be reused"))
    again = _invoke(arena_home, "run", "-g", ",".join(GENERATORS), "--samples", str(SAMPLES), *_flags(), "--db", url)
    assert again.exit_code == 0, again.output
    assert again.stdout.count("reused") == len(GENERATORS)


def test_real_held_out_images_are_far_closer_than_noise(reference):
    classifier, train_features, data = reference
    test_fid = fid(train_features, classifier.embed(data.splits.x_test)[0])
    noise = quantise(torch.rand(360, 1, 8, 8, generator=torch.Generator().manual_seed(1)), 17)
    assert test_fid * 20 < fid(train_features, classifier.embed(noise)[0])


def test_generator_errors_are_one_line(arena):
    for args, message in [
        (["run", "-g", "pixelcnm"], "unknown generator 'pixelcnm': did you mean 'pixelcnn'"),
        (["run", "-g", "vae", "--samples", "1"], "--samples must be at least 2"),
        (["run", "-g", "vae", "-p", "vae.iwae_samples=0"], "iwae_samples=0 is below the minimum 1"),
        (["run", "-a", "fgsm"], "or --generator"),
    ]:
        result = arena(*args)
        assert result.exit_code == 1 and message in result.stderr, result.stderr
        assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_a_generator_that_breaks_the_contract_fails_only_its_own_run(arena):
    import arena as arena_api
    from arena.plugins import Source, set_registry

    class Improper(arena_api.Generator):
        """Claims an exact likelihood but returns log-densities above zero."""

        name = "improper"
        likelihood = "exact"

        def build(self, dataset, ctx):
            return torch.nn.Linear(1, 1)

        def train(self, model, ctx):
            return None

        def sample(self, model, n, generator):
            return torch.rand(n, 1, 8, 8, generator=generator)

        def log_likelihood(self, model, x):
            return torch.ones(len(x))

    hook = arena_api.hookimpl(lambda register: register(Improper), specname="register_generators")
    plugin = type("P", (), {"register_generators": staticmethod(hook)})()
    set_registry(load_registry(extra=[(plugin, Source("arena-improper", "0.1"))]))
    result = arena("run", "-g", "improper,vae", "--samples", "50", "-p", "vae.epochs=1", "-p", "vae.hidden=16")
    assert result.exit_code == 1
    assert "refused: improper" in result.stderr and "a probability above one" in result.stderr
    rows = {r["generator"]: r for r in json.loads(arena("results", "--json").stdout)}
    assert rows["improper"]["status"] == "refused" and rows["vae"]["status"] == "ok"
    assert np.isfinite(rows["vae"]["fid"])


def test_reference_classifier_is_the_same_whatever_the_thread_count(tmp_path):
    """Trained on one thread whatever the caller's setting: one checkpoint, one identity, so
    results that agree in everything but the thread count land in one table."""
    identities = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            host = Host(load_registry(), tmp_path / f"home-{count}", reporter=quiet())
            data = host.dataset("digits")
            built = host.reference(data)
            assert torch.get_num_threads() == count  # restored after training
            identities.append((built.key, built.sha256, host.reference_key(data)[0]))
    finally:
        torch.set_num_threads(threads)
    assert identities[0] == identities[1]


class TestPeeker(Generator):
    """Reads the test split itself (the host gives generators none) and returns its images."""

    name = "test-peeker"

    def build(self, dataset, ctx):
        assert len(ctx.splits.x_test) == 0  # the host keeps the test split from generators
        return _Images(dataset.load().x_test)

    def train(self, model, ctx):
        return []

    def sample(self, model, n, generator):
        return model.images[torch.randint(0, len(model.images), (n,), generator=generator)]


class _Images(torch.nn.Module):
    def __init__(self, images):
        super().__init__()
        self.register_buffer("images", images.detach().clone())


def test_a_generator_that_returns_test_images_is_flagged(arena_home, tmp_path):
    class Plugin:
        @hookimpl
        def register_generators(self, register):
            register(TestPeeker)

    set_registry(load_registry(extra=[(Plugin(), Source("arena-peek", "0.1", "peek"))]))
    with Arena(home=arena_home, db=f"sqlite:///{tmp_path / 'r.db'}", device="cpu") as bench:
        request = Request(dataset="digits", options={"generators": ["test-peeker"], "samples": SAMPLES})
        (outcome,) = bench.run(request)["generative"]
    result = outcome.run.generative
    assert outcome.ok and [flag["code"] for flag in outcome.run.flags] == ["copies-test-images"]
    assert result.test_copies_pixels == 1.0 and result.memorised_pixels < 0.02
    assert result.fid_test < result.fid  # closer to the test split than to the training split
