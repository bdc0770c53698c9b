"""The generative metrics against closed forms and peer libraries (scipy, torchmetrics, prdc)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import prdc
import pytest
import scipy.linalg
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import poly_mmd

from arena.generative_metrics import (
    Authenticity,
    bits_per_dim,
    density_coverage,
    fid,
    fid_interval,
    inception_score,
    kernel_inception_distance,
    kid_subsets,
    precision_recall,
    uniform_bits_per_dim,
)
from arena_leaderboard.render import format_value
from arena_plugins.datasets.digits import Digits


def scipy_frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula with scipy's general matrix square root of sigma1 @ sigma2."""
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root.real))


class RandomFeatures(torch.nn.Module):
    """A fixed random ReLU layer on flattened digits: real, structured, cheap features."""

    def __init__(self, inputs: int = 64, outputs: int = 24):
        super().__init__()
        self.linear = torch.nn.Linear(inputs, outputs).requires_grad_(False)
        torch.nn.init.normal_(self.linear.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        return torch.relu(self.linear(x.flatten(1).float()))


@pytest.fixture(scope="module")
def digits():
    return Digits().load()


@pytest.fixture(scope="module")
def features(digits):
    extractor = RandomFeatures()
    with torch.no_grad():
        return extractor(digits.x_train).double().numpy(), extractor(digits.x_test).double().numpy(), extractor


def test_fid_matches_scipy_sqrtm_reference(features):
    train, test, _ = features
    noisy = test + np.random.default_rng(0).normal(0, 0.5, test.shape)
    for a, b in [(train, test), (train, noisy), (test, noisy)]:
        expected = scipy_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        assert fid(a, b) == pytest.approx(expected, rel=1e-6)
    assert fid(train, train) == pytest.approx(0.0, abs=1e-8)


def test_fid_matches_torchmetrics_with_the_same_extractor(digits, features):
    train, test, extractor = features
    metric = FrechetInceptionDistance(feature=extractor, normalize=True, input_img_size=(1, 8, 8))
    metric.update(digits.x_train, real=True)
    metric.update(digits.x_test, real=False)
    assert fid(train, test) == pytest.approx(float(metric.compute()), rel=1e-3)


def test_fid_bootstrap_interval_brackets_the_estimate(features):
    train, test, _ = features
    noisy = test + np.random.default_rng(1).normal(0, 0.5, test.shape)
    low, high = fid_interval(train, noisy, seed=0, resamples=100)
    assert low < fid(train, noisy) < high
    assert fid_interval(train, noisy, seed=0, resamples=100) == (low, high)  # seeded


def _kid_by_definition(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² of the cubic kernel, term by term over index pairs."""
    kernel = lambda a, b: (a @ b / x.shape[1] + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd_estimator():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(1.0, 2.0, size=(5, 3))
    assert kernel_inception_distance(x, y) == pytest.approx(_kid_by_definition(x, y), rel=1e-12)
    same_size = rng.normal(size=(5, 3))
    peer = poly_mmd(torch.from_numpy(same_size), torch.from_numpy(y))
    assert kernel_inception_distance(same_size, y) == pytest.approx(float(peer), rel=1e-10)


def test_kid_expectation_is_the_population_mmd():
    """Averaged over every possible pair of samples (with replacement) of two small finite
    populations, the estimate equals the population MMD² in closed form: it is unbiased, and
    the biased V-statistic is not."""
    p = np.array([[0.0, 1.0], [1.0, 0.5], [2.0, -1.0]])
    q = np.array([[0.5, 0.0], [1.5, 1.0], [-1.0, 2.0]])
    kernel = lambda a, b: (a @ b.T / 2 + 1) ** 3  # noqa: E731
    population = kernel(p, p).mean() + kernel(q, q).mean() - 2 * kernel(p, q).mean()
    m, n = 3, 2
    estimates, biased = [], []
    for xi in itertools.product(range(3), repeat=m):
        for yi in itertools.product(range(3), repeat=n):
            x, y = p[list(xi)], q[list(yi)]
            estimates.append(kernel_inception_distance(x, y))
            biased.append(kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean())
    assert np.mean(estimates) == pytest.approx(population, rel=1e-10)
    assert np.mean(biased) > population * 1.05


@pytest.mark.parametrize("k", [3, 5])
def test_precision_recall_density_coverage_match_prdc(k):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(300, 8))
    fake = rng.normal(0.4, 1.2, size=(250, 8))
    peer = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    precision, recall = precision_recall(real, fake, k=k)
    density, coverage = density_coverage(real, fake, k=k)
    assert (precision, recall) == pytest.approx((peer["precision"], peer["recall"]), abs=1e-12)
    assert (density, coverage) == pytest.approx((peer["density"], peer["coverage"]), abs=1e-12)
    assert precision_recall(real, real, k=k) == (1.0, 1.0)


def test_density_and_coverage_of_copied_real_rows_match_prdc():
    """Ties: generated rows that are copies of real rows sit on the edge of no ball but their
    own; prdc's open balls (<) give density 1 here, where closed ones (<=) counted more."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 6))
    fake = real[rng.integers(0, 200, 150)]
    peer = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    assert density_coverage(real, fake, k=5) == pytest.approx((peer["density"], peer["coverage"]), abs=1e-12)


def test_kid_over_subsets_is_the_mmd_of_each_subset():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(120, 5)), rng.normal(0.3, 1.0, size=(80, 5))
    # Subsets as large as the smaller set, drawn without replacement, of equal sets: every
    # subset is the whole set reordered, so each gives the full-set estimate.
    mean, std = kid_subsets(real[:80], fake, seed=0, subsets=5, size=1000)
    assert mean == pytest.approx(kernel_inception_distance(real[:80], fake), rel=1e-12) and std < 1e-12
    # Smaller subsets: the mean and spread of the estimates of independently drawn subsets.
    mean, std = kid_subsets(real, fake, seed=3, subsets=40, size=30)
    draws = np.random.default_rng(3)
    direct = []
    for _ in range(40):
        i, j = draws.choice(120, 30, replace=False), draws.choice(80, 30, replace=False)
        direct.append(kernel_inception_distance(real[i], fake[j]))
    assert (mean, std) == pytest.approx((np.mean(direct), np.std(direct)), rel=1e-10)


def test_copy_test_closed_form():
    """Training points on a line 0, 1, 3 (nearest-neighbour distances 1, 1, 2): a candidate is a
    copy when its distance to its nearest training point is at most the factor times that
    point's own nearest-neighbour distance (Alaa et al. 2022: factor 1, ties count)."""
    train = np.array([[0.0], [1.0], [3.0]])
    candidates = np.array([[0.2], [0.6], [2.2], [3.9], [5.5]])
    # factor 1: 0.2 -> 0 (0.2 <= 1), 0.6 -> 1 (0.4 <= 1), 2.2 -> 3 (0.8 <= 2), 3.9 -> 3 (0.9 <= 2);
    # 5.5 -> 3 (2.5 > 2). Factor 1/2: 0.2 (<= 0.5), 0.6 (0.4 <= 0.5), 2.2 (0.8 <= 1), 3.9
    # (0.9 <= 1): still 4 of 5; at 1/4 only 0.2 (<= 0.25).
    assert Authenticity(train, factor=1.0).share(candidates) == pytest.approx(4 / 5)
    assert Authenticity(train).share(candidates) == pytest.approx(4 / 5)
    assert Authenticity(train, factor=0.25).share(candidates) == pytest.approx(1 / 5)
    # Exact copies count, duplicated training points (own distance 0) included.
    duplicated = np.array([[0.0], [0.0], [3.0]])
    assert Authenticity(duplicated).share(duplicated) == 1.0
    assert Authenticity(train).share(np.array([[10.0]])) == 0.0


def test_fid_is_never_negative_and_never_printed_as_minus_zero():
    features = np.random.default_rng(2).normal(size=(50, 4))
    for shift in (0.0, 1e-9):  # identical sets: float rounding alone, of either sign
        value = fid(features, features + shift)
        assert 0.0 <= value < 1e-9 and math.copysign(1, value) == 1
    for tiny in (-0.0, -1e-12):
        assert format_value(tiny, "number") in ("0", "-1e-12") and format_value(tiny, "percent") == "0.0%"
    assert format_value(-0.0, "number") == "0"


def test_inception_score_closed_forms():
    confident = np.eye(10)[np.arange(1000) % 10]  # sure of each class, all classes equally often
    assert inception_score(confident) == pytest.approx(10.0)
    assert inception_score(np.full((50, 10), 0.1)) == pytest.approx(1.0)
    assert inception_score(np.eye(10)[np.zeros(40, dtype=int)]) == pytest.approx(1.0)  # one class only


def test_bits_per_dim_of_the_uniform_model():
    levels, dims = 17, 64
    log_likelihood = np.full(10, -dims * math.log(levels))
    assert bits_per_dim(log_likelihood, dims) == pytest.approx(uniform_bits_per_dim(levels)) == pytest.approx(4.087, abs=1e-3)
    assert uniform_bits_per_dim(256) == 8.0
