"""Confidence intervals for the numbers LocoLab reports (numpy only, no torch; docs/statistics.md says why these).

- ``drop_intervals``: LocoGen's normalized drop ``(original - window) / (original - reference)`` of many windows at
  once, and the reference gap ``original - reference``, with percentile-bootstrap intervals over units (one unit =
  one prompt x seed: its original, reference and window images share the seed, so they are resampled together);
  with several prompts, seeds are resampled within each prompt (prompts fixed) or whole prompts are resampled
  (prompts a sample, ``unit_counts``).
- ``ratio_drop_interval``: an edit's normalized score drop ``(before - after) / (before - reference)``, before/after
  pairs resampled together and the reference images resampled on their own.
- ``wilson``: the Wilson score interval of a rate (k of n).

Bootstrap intervals are percentile intervals *expanded* for small samples (Hesterberg 2015, "What Teachers Should Know
About the Bootstrap", The American Statistician 69(4)): the percentiles are taken at the tail ``a`` with
``z_(1-a/2) = sqrt(n / (n - 1)) * t_(1-alpha/2, n-1)``, which corrects the plain percentile interval's known
narrowness (a nominal 95% interval covers about 81% of the time from 4 units, 89% from 8).

Resampling is seeded: the same data, level, resample count and seed give the same intervals on any machine.
"""

import functools
import hashlib
import math
import warnings
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

RESAMPLES = 1000  # bootstrap resamples; the Monte Carlo error of a 95% bound is then small next to its width
SEED = 0


def rng_for(seed: int, *key) -> np.random.Generator:
    """A generator seeded by ``seed`` and a stable digest of ``key`` (e.g. run, model, concept), so each summary's
    resamples do not depend on what else is summarized alongside it."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def resample_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) float counts: how often each of ``n`` units is drawn in each bootstrap resample."""
    draws = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` degrees of freedom: bisection on its CDF, integrated
    in the angle ``x = sqrt(df) tan(theta)``, where the density is a smooth ``cos(theta)^(df-1)``."""
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(math.pi)

    def cdf(x: float) -> float:
        theta = np.linspace(0.0, math.atan(x / math.sqrt(df)), 2001)
        return 0.5 + scale * float(np.trapezoid(np.cos(theta) ** (df - 1), theta))

    low, high = 0.0, 1.0
    while cdf(high) < p:
        low, high = high, high * 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < p else (low, middle)
    return (low + high) / 2


def unit_counts(prompt: np.ndarray, clustered: bool, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) float counts of a bootstrap of n units grouped by ``prompt`` (indices 0..P-1): seeds resampled
    within each prompt (``clustered`` False: the prompts are fixed), or whole prompts resampled, each drawn with all
    its seeds (``clustered`` True: the prompts are a sample; resampling seeds again within drawn prompts would count
    their noise twice). One prompt: ``resample_counts``."""
    n = len(prompt)
    prompts = int(prompt.max()) + 1 if n else 0
    if prompts <= 1:
        return resample_counts(n, resamples, rng)
    if clustered:
        return resample_counts(prompts, resamples, rng)[:, prompt]
    counts = np.zeros((resamples, n))
    for p in range(prompts):
        units = np.flatnonzero(prompt == p)
        counts[:, units] = resample_counts(len(units), resamples, rng)
    return counts


@functools.lru_cache(maxsize=4096)
def design_tail(level: float, units: int, prompts: int, clustered: bool) -> float:
    """The tail at which an expanded percentile interval of ``units`` units in ``prompts`` prompts is read
    (``expanded_tail``): resampling whole prompts, the P prompts are the sample (P - 1 degrees of freedom); resampling
    seeds within fixed prompts, each prompt's n/P units are (n - P degrees of freedom). NaN when there is no spread
    to resample (a single unit per prompt, or a single prompt resampled)."""
    size, df = (prompts, prompts - 1) if clustered else (units / max(prompts, 1), units - prompts)
    if df < 1 or size <= 1:
        return float("nan")
    return expanded_tail(level, float(size), int(df))


@functools.lru_cache(maxsize=1024)
def expanded_tail(level: float, n: float, df: int | None = None) -> float:
    """The tail probability at which an expanded percentile interval of ``n`` resampled units is read (see the
    module docstring; ``df``: the t quantile's degrees of freedom, n - 1 unless the units are grouped); the plain
    ``(1 - level) / 2`` for large n, far smaller for a handful of units."""
    if n < 2 and df is None:
        return (1.0 - level) / 2.0
    z = math.sqrt(n / (n - 1)) * t_quantile(1.0 - (1.0 - level) / 2.0, int(n - 1) if df is None else df)
    return 1.0 - NormalDist().cdf(z)


def _bounds(samples: np.ndarray, level: float, n: int | None = None,
            tail: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Expanded percentile bounds along axis 0 for statistics of ``n`` units (or read at ``tail``). Resamples where
    the statistic is undefined (a zero gap) are left out; a column with none defined gets NaN bounds."""
    tail = expanded_tail(level, n) if tail is None else tail
    finite = np.isfinite(samples)
    if finite.all():
        return tuple(np.quantile(samples, [tail, 1.0 - tail], axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        return tuple(np.nanquantile(np.where(finite, samples, np.nan), [tail, 1.0 - tail], axis=0))


def ratio_bounds(numerators: np.ndarray, denominators: np.ndarray, level: float,
                 tails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expanded percentile bounds of k ratios from their (resamples, k) resampled numerators and denominators, column
    j read at ``tails[j]`` (``design_tail``; NaN: no bounds)."""
    with np.errstate(all="ignore"):
        ratios = numerators / denominators
    low, high = np.full(ratios.shape[1], np.nan), np.full(ratios.shape[1], np.nan)
    for tail in np.unique(tails[~np.isnan(tails)]):  # windows missing from some units read their own tail
        columns = tails == tail
        low[columns], high[columns] = _bounds(ratios[:, columns], level, tail=float(tail))
    return low, high


@dataclass
class DropEstimates:
    """What ``drop_intervals`` returns. Per window (arrays of length k): the units that have it, its mean score and
    sample standard deviation, the normalized drop and its interval. Per concept (scalars): the units with both
    references, the mean gap ``original - reference``, its standard deviation over units and its interval."""

    n_images: np.ndarray
    score_mean: np.ndarray
    score_std: np.ndarray
    drop: np.ndarray
    drop_low: np.ndarray
    drop_high: np.ndarray
    n_units: int
    gap: float
    gap_std: float
    gap_low: float
    gap_high: float


def drop_intervals(original: np.ndarray, reference: np.ndarray, windows: np.ndarray, level: float,
                   resamples: int, rng: np.random.Generator, prompt: np.ndarray | None = None,
                   clustered: bool = False) -> DropEstimates:
    """Normalized drops of k windows over n units, with percentile-bootstrap intervals.

    Each window's drop uses the units that have its image and both references: ``(sum original - sum window) /
    (sum original - sum reference)`` over those units (a ratio of means). One set of resamples serves every window and
    the gap, so their intervals are consistent with each other. A window whose image equals the reference in every
    unit has drop exactly 1.

    Args:
        original, reference: (n,) scores of each unit's original and reference image (NaN: missing).
        windows: (n, k) scores of each unit's window images (NaN: not rendered for that unit).
        level: the interval's coverage, e.g. 0.95.
        resamples: bootstrap resamples.
        rng: the generator (``rng_for``).
        prompt: (n,) each unit's prompt index (None: one prompt); ``clustered``: resample the prompts too
            (``unit_counts``).
    """
    valid = ~np.isnan(original) & ~np.isnan(reference)
    present = ~np.isnan(windows) & valid[:, None]
    o, r = np.where(valid, original, 0.0), np.where(valid, reference, 0.0)
    stacked = np.concatenate([present * o[:, None], np.where(present, windows, 0.0), present * r[:, None]], axis=1)
    k = windows.shape[1]
    n_images = present.sum(axis=0)
    # Column sums reduce each column in the same order, so a window identical to the reference gives exactly 1.
    sums = stacked.sum(axis=0)
    with np.errstate(all="ignore"):
        drop = (sums[:k] - sums[k:2 * k]) / (sums[:k] - sums[2 * k:])
        score_mean = sums[k:2 * k] / n_images
        squares = np.where(present, (windows - score_mean) ** 2, 0.0).sum(axis=0)
        score_std = np.sqrt(squares / (n_images - 1))
    drop = np.where(sums[:k] == sums[2 * k:], np.nan, drop)
    score_std = np.where(n_images > 1, score_std, np.nan)
    score_mean = np.where(n_images > 0, score_mean, np.nan)
    n = len(original)
    differences = (original - reference)[valid]
    n_units = int(valid.sum())
    gap = float(differences.mean()) if n_units else float("nan")
    gap_std = float(differences.std(ddof=1)) if n_units > 1 else float("nan")
    if n == 0 or n_units == 0:
        nan = np.full(k, np.nan)
        return DropEstimates(n_images, score_mean, score_std, drop, nan, nan, n_units, gap, gap_std, np.nan, np.nan)
    prompt = np.zeros(n, np.int64) if prompt is None else prompt
    counts = unit_counts(prompt, clustered, resamples, rng)
    groups = np.eye(int(prompt.max()) + 1)[prompt]
    window_prompts = ((groups.T @ present) > 0).sum(axis=0)
    tails = np.array([design_tail(level, int(u), int(p), clustered) for u, p in zip(n_images, window_prompts)])
    # Differences of sums, not sums of differences: a window identical to the reference keeps drop exactly 1.
    boot = counts @ stacked
    drop_low, drop_high = ratio_bounds(boot[:, :k] - boot[:, k:2 * k], boot[:, :k] - boot[:, 2 * k:], level, tails)
    with np.errstate(all="ignore"):
        gaps = (counts[:, valid] @ differences) / counts[:, valid].sum(axis=1)
    gap_tail = design_tail(level, n_units, int((groups[valid].sum(axis=0) > 0).sum()), clustered)
    gap_low, gap_high = _bounds(gaps[:, None], level, tail=gap_tail) if not math.isnan(gap_tail) else ([np.nan],) * 2
    return DropEstimates(n_images, score_mean, score_std, drop, drop_low, drop_high, n_units, gap, gap_std,
                         float(gap_low[0]), float(gap_high[0]))


def ratio_drop_interval(before: np.ndarray, after: np.ndarray, reference: np.ndarray, level: float,
                        resamples: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """An edit's normalized score drop ``(mean before - mean after) / (mean before - mean reference)`` and its
    percentile-bootstrap interval: (before, after) pairs of one prompt and seed are resampled together, the reference
    images on their own. Returns (drop, low, high); NaN where the gap is zero or nothing was measured."""
    if not len(before) or not len(reference):
        return float("nan"), float("nan"), float("nan")
    gap = before.mean() - reference.mean()
    drop = float((before.mean() - after.mean()) / gap) if gap else float("nan")
    pairs = resample_counts(len(before), resamples, rng)
    references = resample_counts(len(reference), resamples, rng)
    with np.errstate(all="ignore"):
        b, a = pairs @ before / len(before), pairs @ after / len(before)
        drops = (b - a) / (b - references @ reference / len(reference))
    low, high = _bounds(drops[:, None], level, len(before))
    return drop, float(low[0]), float(high[0])


def ratio_interval(before: np.ndarray, after: np.ndarray, level: float, resamples: int,
                   rng: np.random.Generator) -> tuple[float, float, float]:
    """The ratio of means ``mean(after) / mean(before)`` of paired units (e.g. an unrelated prompt's mean score after
    and before an edit) and its percentile-bootstrap interval, the pairs resampled together (expanded for few units,
    as every interval here). Returns (ratio, low, high); NaN where nothing was measured or the mean before is 0, and
    NaN bounds from a single unit (no spread to resample)."""
    if not len(before):
        return float("nan"), float("nan"), float("nan")
    with np.errstate(all="ignore"):
        ratio = float(after.mean() / before.mean())
    if len(before) < 2:
        return ratio, float("nan"), float("nan")
    with np.errstate(all="ignore"):
        counts = resample_counts(len(before), resamples, rng)
        ratios = (counts @ after) / (counts @ before)
    low, high = _bounds(ratios[:, None], level, len(before))
    return ratio, float(low[0]), float(high[0])


def wilson(successes: int, n: int, level: float) -> tuple[float, float]:
    """The Wilson score interval of the rate ``successes / n`` at ``level``; (NaN, NaN) when n is 0.

    Unlike the normal approximation it stays inside [0, 1] and is usable for the handful of prompts an edit is
    evaluated on (0 of 4 gives [0, 0.49] at 95%)."""
    if n == 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(1.0 - (1.0 - level) / 2.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))
