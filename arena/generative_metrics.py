"""The maths of the generative track: likelihood in bits per dimension and sample quality.

Sample-quality scores compare feature vectors (rows of float arrays) of real and generated
images; the host takes them from its reference classifier (see :mod:`arena.reference`). All
arithmetic is float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import pairwise_distances
from threadpoolctl import threadpool_limits
from sklearn.metrics.pairwise import polynomial_kernel

#: Neighbours that define the k-NN balls of improved precision and recall (Kynkäänniemi et al. 2019).
PRECISION_RECALL_K = 3
#: Neighbours that define the k-NN balls of density and coverage (Naeem et al. 2020).
DENSITY_COVERAGE_K = 5
#: Bootstrap resamples behind the FID interval, and its coverage.
FID_BOOTSTRAP = 200
FID_INTERVAL = 0.95
#: KID over random subsets, as torch-fidelity reports it: how many, and at most how many rows
#: of each set per subset (fewer when a set is smaller).
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def bits_per_dim(log_likelihood: np.ndarray, dims: int) -> float:
    """Mean negative log-likelihood of images in bits per dimension, from log p(x) in nats."""
    values = np.asarray(log_likelihood, dtype=np.float64)
    return float(-values.mean() / (dims * math.log(2)))


def uniform_bits_per_dim(levels: int) -> float:
    """The baseline: a uniform distribution over ``levels`` pixel values, log2(levels) bits."""
    return math.log2(levels)


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of feature rows, in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least two feature rows, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Dowson & Landau 1982):
    ||mu1 - mu2||² + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½), the FID of Heusel et al. (2017).

    Tr((sigma1 sigma2)^½) is the sum of the square roots of the eigenvalues of the symmetric
    PSD matrix sigma1^½ sigma2 sigma1^½, which has the same spectrum as sigma1 sigma2; this
    avoids the complex square root of a non-symmetric product.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root = _psd_sqrt(sigma1)
    middle = root @ sigma2 @ root
    trace_sqrt = np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two sets of feature rows (never below 0: a distance, whatever the float
    rounding of identical sets)."""
    return max(0.0, frechet_distance(*gaussian_statistics(real), *gaussian_statistics(fake)))


def fid_interval(
    real: np.ndarray, fake: np.ndarray, seed: int, resamples: int = FID_BOOTSTRAP, coverage: float = FID_INTERVAL
) -> tuple[float, float]:
    """A bootstrap interval for the FID another draw of as many images would give: both sets
    resampled with replacement, the central ``coverage`` of the bootstrap FIDs, shifted so that
    it is centred on the estimate as the bootstrap distribution is on its mean; floored at 0.

    The shift matters: FID is biased upwards by a term that grows as the sample shrinks
    (Chong & Forsyth 2020), and resampling with replacement repeats rows, so every bootstrap
    FID carries a larger bias than the estimate; the plain percentile interval can then miss
    the estimate altogether. The spread, not the location, is what the bootstrap measures here.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    rng = np.random.default_rng(seed)
    with threadpool_limits(limits=1):  # many small matrices: one BLAS thread is fastest
        values = np.array([
            fid(real[rng.integers(0, len(real), len(real))], fake[rng.integers(0, len(fake), len(fake))])
            for _ in range(resamples)
        ])
    tail = (1 - coverage) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail]) - values.mean() + fid(real, fake)
    return max(0.0, float(low)), max(0.0, float(high))


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """KID (Bińkowski et al. 2018): the unbiased estimate of the squared MMD with the cubic
    polynomial kernel k(a, b) = (a·b / d + 1)³, over the whole of both sets.

    MMD²_u = Σ_{i≠j} k(x_i, x_j) / m(m-1) + Σ_{i≠j} k(y_i, y_j) / n(n-1) - 2 Σ k(x_i, y_j) / mn.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m, n = len(real), len(fake)
    if m < 2 or n < 2:
        raise ValueError("KID needs at least two real and two generated feature rows")
    kernel = dict(degree=3, gamma=1.0 / real.shape[1], coef0=1.0)
    k_xx = polynomial_kernel(real, real, **kernel)
    k_yy = polynomial_kernel(fake, fake, **kernel)
    k_xy = polynomial_kernel(real, fake, **kernel)
    within_real = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_fake = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_real + within_fake - 2 * k_xy.mean())


def kid_subsets(real: np.ndarray, fake: np.ndarray, seed: int, subsets: int = KID_SUBSETS,
                size: int = KID_SUBSET_SIZE) -> tuple[float, float]:
    """KID as torch-fidelity reports it (``kid_subsets``, ``kid_subset_size``): the unbiased
    MMD² of :func:`kernel_inception_distance` on ``subsets`` pairs of random subsets of
    ``min(size, len(real), len(fake))`` rows of each set, drawn without replacement; the mean
    and the (population) standard deviation over the subsets.

    The kernel matrices are computed once over the whole sets and each subset's sums read from
    them, which gives the same numbers as computing each subset's kernels afresh.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least two real and two generated feature rows")
    kernel = dict(degree=3, gamma=1.0 / real.shape[1], coef0=1.0)
    k_xx = polynomial_kernel(real, real, **kernel)
    k_yy = polynomial_kernel(fake, fake, **kernel)
    k_xy = polynomial_kernel(real, fake, **kernel)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        i = rng.choice(len(real), m, replace=False)
        j = rng.choice(len(fake), m, replace=False)
        xx, yy = k_xx[np.ix_(i, i)], k_yy[np.ix_(j, j)]
        within = (xx.sum() - np.trace(xx) + yy.sum() - np.trace(yy)) / (m * (m - 1))
        values.append(within - 2 * k_xy[np.ix_(i, j)].mean())
    return float(np.mean(values)), float(np.std(values))


#: A sample is a near-copy of its nearest training image when it lies within this fraction of
#: that image's distance to its nearest other training image.
COPY_FACTOR = 0.5


class Authenticity:
    """The copy test of Alaa et al. (2022, "How Faithful is your Synthetic Data?", §3.3) against
    one set of training rows: a candidate is not authentic when its distance to its nearest
    training row is at most ``factor`` times that row's distance to its own nearest other
    training row (the authors' rule is ``factor = 1``).

    Arena uses ``factor = 1/2`` (:data:`COPY_FACTOR`): held-out images, which copy nothing,
    then score about 0% (with ``factor = 1`` about half of them "copy" a training image on
    `digits`), so a few copying samples stand out. Each training row's distance to its nearest
    other training row is computed once.
    """

    def __init__(self, train: np.ndarray, factor: float = COPY_FACTOR) -> None:
        self.train = np.asarray(train, np.float64)
        self.factor = factor
        with threadpool_limits(limits=1):
            within = pairwise_distances(self.train, self.train)
        np.fill_diagonal(within, np.inf)
        self.own = within.min(axis=1)

    def nearest(self, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each candidate's nearest training row and its distance to it."""
        with threadpool_limits(limits=1):
            distances = pairwise_distances(np.asarray(candidates, np.float64), self.train)
        index = distances.argmin(axis=1)
        return index, distances[np.arange(len(index)), index]

    def share(self, candidates: np.ndarray) -> float:
        """The share of candidates that are copies of a training row (not authentic)."""
        index, distance = self.nearest(candidates)
        return float((distance <= self.factor * self.own[index]).mean())


def nearest_neighbour_radii(features: np.ndarray, k: int) -> np.ndarray:
    """The distance from each row to its k-th nearest other row."""
    distances = pairwise_distances(features, features)
    return np.partition(distances, k, axis=1)[:, k]  # column 0 is the row itself


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = PRECISION_RECALL_K) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Precision: the fraction of generated rows inside the k-NN ball of at least one real row
    (the real manifold). Recall: the fraction of real rows inside the k-NN ball of at least one
    generated row. Balls are closed (distance ≤ radius), as in the paper.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    real_radii, fake_radii = nearest_neighbour_radii(real, k), nearest_neighbour_radii(fake, k)
    distances = pairwise_distances(real, fake)
    precision = (distances <= real_radii[:, None]).any(axis=0).mean()
    recall = (distances <= fake_radii[None, :]).any(axis=1).mean()
    return float(precision), float(recall)


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = DENSITY_COVERAGE_K) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), over k-NN balls of the real rows only.

    Density: Σ_j Σ_i 1[y_j ∈ B(x_i, NND_k(x_i))] / (k M), how many real balls hold each generated
    row on average (1 when the distributions match). Coverage: the fraction of real balls that
    hold at least one generated row. The balls are open (distance < radius), as in the authors'
    ``prdc`` package: a generated copy of a real row does not count for the balls it sits on
    the edge of.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    radii = nearest_neighbour_radii(real, k)
    inside = pairwise_distances(real, fake) < radii[:, None]
    density = inside.sum() / (k * len(fake))
    coverage = inside.any(axis=1).mean()
    return float(density), float(coverage)


def inception_score(probabilities: np.ndarray) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))) (Salimans et al. 2016), with p(y|x) from the reference
    classifier instead of Inception, over all samples as one split."""
    p = np.asarray(probabilities, np.float64)
    marginal = p.mean(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0)
    return float(np.exp(terms.sum(axis=1).mean()))


@dataclass(frozen=True)
class SampleQuality:
    """Every sample-quality score of one set of generated images against the reference set."""

    fid: float
    fid_low: float
    fid_high: float
    #: KID: mean and standard deviation over subsets (:func:`kid_subsets`).
    kid: float
    kid_std: float
    precision: float
    recall: float
    density: float
    coverage: float
    inception_score: float


def sample_quality(real: np.ndarray, fake: np.ndarray, fake_probabilities: np.ndarray, seed: int) -> SampleQuality:
    """FID with its bootstrap interval, KID, precision/recall, density/coverage and IS."""
    # Small matrices: one BLAS thread is fastest, and idle spinning threads stall a busy machine.
    with threadpool_limits(limits=1):
        return _sample_quality(real, fake, fake_probabilities, seed)


def _sample_quality(real: np.ndarray, fake: np.ndarray, fake_probabilities: np.ndarray, seed: int) -> SampleQuality:
    low, high = fid_interval(real, fake, seed)
    precision, recall = precision_recall(real, fake)
    density, coverage = density_coverage(real, fake)
    kid, kid_std = kid_subsets(real, fake, seed)
    return SampleQuality(
        fid=fid(real, fake),
        fid_low=low,
        fid_high=high,
        kid=kid,
        kid_std=kid_std,
        precision=precision,
        recall=recall,
        density=density,
        coverage=coverage,
        inception_score=inception_score(fake_probabilities),
    )
