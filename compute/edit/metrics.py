"""The numbers of an edit's evaluation battery, numpy only (docs/method.md §4.2): paired image distances (SSIM, PSNR,
CLIP image cosine), CMMD with a paired permutation p-value, the paired change of a detection rate with Tango's
score interval, and a bootstrap interval of a mean."""

import math
from statistics import NormalDist

import numpy as np

from locolab.contract.intervals import expanded_tail, resample_counts, wilson

SSIM_WINDOW = 7  # the side of SSIM's uniform window (scikit-image's default)
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2  # Wang et al. 2004's constants for a data range of 1
CMMD_SIGMA, CMMD_SCALE = 10.0, 1000.0  # Jayasumana et al. 2024's RBF bandwidth and reporting scale
PERMUTATIONS = 1000


def _box_mean(values: np.ndarray, size: int) -> np.ndarray:
    """Means of every ``size`` x ``size`` window of (H, W, C) values (valid windows only)."""
    summed = np.pad(values, ((1, 0), (1, 0), (0, 0))).cumsum(0).cumsum(1)
    total = summed[size:, size:] - summed[:-size, size:] - summed[size:, :-size] + summed[:-size, :-size]
    return total / (size * size)


def ssim(first: np.ndarray, second: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004) of two (H, W, 3) images in [0, 1]: a uniform 7x7 window, sample
    covariances, channels averaged, as ``skimage.metrics.structural_similarity(channel_axis=-1, data_range=1)``.
    Exactly 1.0 for identical images."""
    x, y = np.asarray(first, np.float64), np.asarray(second, np.float64)
    size = min(SSIM_WINDOW, *x.shape[:2])
    correction = size * size / (size * size - 1)
    mx, my = _box_mean(x, size), _box_mean(y, size)
    vx = (_box_mean(x * x, size) - mx * mx) * correction
    vy = (_box_mean(y * y, size) - my * my) * correction
    cxy = (_box_mean(x * y, size) - mx * my) * correction
    index = ((2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
    return float(index.mean())


def psnr(first: np.ndarray, second: np.ndarray) -> float | None:
    """Peak signal-to-noise ratio in dB of two images in [0, 1]; None for identical images (infinite)."""
    error = float(np.mean((np.asarray(first, np.float64) - np.asarray(second, np.float64)) ** 2))
    return None if error == 0 else 10.0 * math.log10(1.0 / error)


def cosine_distance(first: np.ndarray, second: np.ndarray, identical: np.ndarray) -> np.ndarray:
    """1 - cosine of paired L2-normalised embeddings (N, D); exactly 0 where ``identical`` (bit-identical images,
    whose embeddings are equal but whose float cosine may round below 1)."""
    distance = np.clip(1.0 - np.sum(np.asarray(first, np.float64) * np.asarray(second, np.float64), -1), 0.0, 2.0)
    return np.where(identical, 0.0, distance)


def _rbf_means(x: np.ndarray, y: np.ndarray) -> float:
    squared = (x * x).sum(1)[:, None] + (y * y).sum(1)[None] - 2.0 * x @ y.T
    return float(np.exp(-np.maximum(squared, 0.0) / (2.0 * CMMD_SIGMA ** 2)).mean())


def cmmd(x: np.ndarray, y: np.ndarray) -> float:
    """CMMD (Jayasumana et al., "Rethinking FID", CVPR 2024): the squared MMD with a Gaussian RBF kernel (sigma 10)
    between two sets of CLIP image embeddings, times 1000, as google-research/cmmd's ``distance.mmd``. 0 for a set
    and itself."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return max(0.0, CMMD_SCALE * (_rbf_means(x, x) + _rbf_means(y, y) - 2.0 * _rbf_means(x, y)))


def cmmd_paired_test(before: np.ndarray, after: np.ndarray, rng: np.random.Generator,
                     permutations: int = PERMUTATIONS) -> tuple[float, float]:
    """CMMD between paired sets (row i of each: one prompt and seed) and its permutation p-value: under "the edit
    changes nothing" each pair's two images are exchangeable, so each permutation swaps a random half of the pairs;
    p = (1 + permutations at least as large) / (1 + permutations)."""
    observed = cmmd(before, after)
    exceeded = 0
    for _ in range(permutations):
        swap = rng.random(len(before)) < 0.5
        exceeded += cmmd(np.where(swap[:, None], after, before), np.where(swap[:, None], before, after)) >= observed
    return observed, (1 + exceeded) / (1 + permutations)


def _tango_z(lost: int, gained: int, n: int, fall: float) -> float:
    """Tango's score statistic for a fall ``p_before - p_after`` of paired proportions (``lost``: images detected
    before, not after; ``gained``: the reverse), with the nuisance rate at its constrained maximum likelihood."""
    w = -lost - gained + (2 * n - lost + gained) * fall
    rate = (math.sqrt(w * w + 8 * n * gained * fall * (1 - fall)) - w) / (4 * n)
    variance = n * (2 * rate + fall * (1 - fall))
    numerator = lost - gained - n * fall
    if variance <= 0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def _tango_bound(lost: int, gained: int, n: int, z: float) -> float:
    """The fall at which Tango's statistic (decreasing in the fall) equals ``z``, by bisection on [-1, 1]."""
    low, high = -1.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _tango_z(lost, gained, n, middle) > z else (low, middle)
    return (low + high) / 2


def paired_rate_change(before: np.ndarray, after: np.ndarray, level: float) -> dict:
    """A detection rate before and after an edit on the same units (bool arrays), each with a Wilson interval, and
    the change after - before with Tango's score interval for paired proportions (Tango 1998, Statistics in
    Medicine 17(8)): it excludes 0 exactly when McNemar's test rejects "the rate is unchanged" at ``level``."""
    before, after = np.asarray(before, bool), np.asarray(after, bool)
    n = len(before)
    if n == 0:
        return {"units": 0}
    k1, k2 = int(before.sum()), int(after.sum())
    (l1, u1), (l2, u2) = wilson(k1, n, level), wilson(k2, n, level)
    lost, gained = int((before & ~after).sum()), int((~before & after).sum())
    z = NormalDist().inv_cdf(1.0 - (1.0 - level) / 2.0)
    return {"units": n, "before": k1 / n, "before_low": l1, "before_high": u1, "after": k2 / n, "after_low": l2,
            "after_high": u2, "lost": lost, "gained": gained, "change": (k2 - k1) / n,
            "change_low": -_tango_bound(lost, gained, n, -z), "change_high": -_tango_bound(lost, gained, n, z)}


def mean_interval(values: np.ndarray, level: float, resamples: int,
                  rng: np.random.Generator) -> tuple[float, float, float]:
    """The mean of ``values`` (one per unit) and its expanded percentile-bootstrap interval
    (``contract.intervals``); NaN bounds for fewer than two units."""
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        mean = float(values.mean()) if len(values) else float("nan")
        return mean, float("nan"), float("nan")
    means = resample_counts(len(values), resamples, rng) @ values / len(values)
    tail = expanded_tail(level, len(values))
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(values.mean()), float(low), float(high)
