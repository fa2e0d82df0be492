"""The decision rule for "a window localizes" (numpy only; docs/statistics.md says why this rule).

Per window and unit (one prompt x seed), ``removed = original - window`` and ``gap = original - reference``. The window
removes at least the fraction ``threshold`` of the gap when ``mean(removed) - threshold * mean(gap) > 0``: a paired,
one-sided t test of that difference over units, whatever the threshold, from a few sufficient statistics per window
(``paired_stats``), so one table of them serves every threshold. The p-values of a concept's windows are adjusted
together by Holm's step-down method (``holm``), which keeps the chance that any of them localizes falsely at the
test's level.

Units of one prompt share the prompt; how that enters the test is the ``clustered`` flag:

- prompts fixed (``clustered=False``): the conclusion is about these prompts; the variance is the pooled
  within-prompt variance, with ``units - prompts`` degrees of freedom (one prompt: the plain paired t test);
- prompts resampled (``clustered=True``): the prompts are a sample of the concept's prompts; the variance is the
  cluster-robust one over prompts, with ``prompts - 1`` degrees of freedom (balanced: the t test of prompt means).
"""

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class PairedStats:
    """Per window (arrays of length k): units, degrees of freedom, the means of ``removed`` and ``gap`` over the
    window's units, and the variances and covariance *of those means*."""

    n: np.ndarray
    df: np.ndarray
    removed: np.ndarray
    gap: np.ndarray
    removed_var: np.ndarray
    gap_var: np.ndarray
    cov: np.ndarray


def paired_stats(original: np.ndarray, reference: np.ndarray, windows: np.ndarray, prompt: np.ndarray,
                 clustered: bool) -> PairedStats:
    """The paired test's sufficient statistics of k windows over n units.

    Args:
        original, reference: (n,) scores shared by the windows, or (n, k) one column per window (NaN: missing).
        windows: (n, k) scores (NaN: not rendered for that unit).
        prompt: (n,) the prompt index (0..P-1) of each unit.
        clustered: prompts resampled (cluster-robust variance) or fixed (pooled within-prompt variance).
    """
    original, reference = (np.broadcast_to(x[:, None] if x.ndim == 1 else x, windows.shape)
                           for x in (original, reference))
    present = (~np.isnan(windows) & ~np.isnan(original) & ~np.isnan(reference)).astype(np.float64)
    removed = np.where(present > 0, original - np.nan_to_num(windows), 0.0)
    gap = np.where(present > 0, original - reference, 0.0)
    groups = np.eye(int(prompt.max()) + 1 if len(prompt) else 0)[prompt]  # (n, P) indicator
    n = present.sum(axis=0)
    per_prompt = groups.T @ present  # (P, k) units of each prompt having the window
    prompts = (per_prompt > 0).sum(axis=0)
    with np.errstate(all="ignore"):
        mean_r, mean_g = removed.sum(axis=0) / n, gap.sum(axis=0) / n
        if clustered:
            # Cluster sums of the residuals around the overall means; V = P/(P-1) sum_p S_p^2 / n^2.
            sr, sg = groups.T @ (removed - present * mean_r), groups.T @ (gap - present * mean_g)
            scale = prompts / (prompts - 1) / n**2
            var_r, var_g, cov = scale * (sr**2).sum(0), scale * (sg**2).sum(0), scale * (sr * sg).sum(0)
            df = prompts - 1
        else:
            # Residuals around each prompt's own means; V = pooled within variance / n.
            cr, cg = (groups.T @ removed) / per_prompt, (groups.T @ gap) / per_prompt
            er = present * (removed - groups @ np.nan_to_num(cr))
            eg = present * (gap - groups @ np.nan_to_num(cg))
            df = n - prompts
            scale = 1.0 / (df * n)
            var_r, var_g, cov = scale * (er**2).sum(0), scale * (eg**2).sum(0), scale * (er * eg).sum(0)
    bad = df < 1
    nan = np.nan
    return PairedStats(n.astype(np.int64), np.where(bad, 0, df).astype(np.int64), np.where(n > 0, mean_r, nan),
                       np.where(n > 0, mean_g, nan), np.where(bad, nan, var_r), np.where(bad, nan, var_g),
                       np.where(bad, nan, cov))


def t_sf(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """P(T > t) for Student's t with integer ``df`` >= 1 (elementwise), exact: with ``x = sqrt(df) tan(theta)`` the
    CDF is ``1/2 + c_df * integral_0^theta cos^(df-1)``, integrated by the recursion
    ``I_m = cos^(m-1) sin / m + (m-1)/m * I_(m-2)``."""
    t, df = np.broadcast_arrays(np.asarray(t, np.float64), np.asarray(df, np.int64))
    theta = np.arctan(t / np.sqrt(np.maximum(df, 1)))
    cos, sin = np.cos(theta), np.sin(theta)
    result = np.full(t.shape, np.nan)
    for d in np.unique(df[df >= 1]):
        mine = df == d
        c, s, th = cos[mine], sin[mine], theta[mine]
        m = int(d) - 1
        integral = th if m % 2 == 0 else s
        for j in range(2 if m % 2 == 0 else 3, m + 1, 2):
            integral = c ** (j - 1) * s / j + (j - 1) / j * integral
        scale = math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2)) / math.sqrt(math.pi)
        result[mine] = 0.5 - scale * integral
    return np.clip(result, 0.0, 1.0)


def p_values(stats: PairedStats, threshold: float) -> np.ndarray:
    """One-sided p-values of "the window removes no more than ``threshold`` of the gap" (small: it removes more).
    A difference without spread is decided by its sign; NaN where the test has no degrees of freedom."""
    difference = stats.removed - threshold * stats.gap
    with np.errstate(all="ignore"):
        variance = stats.removed_var - 2 * threshold * stats.cov + threshold**2 * stats.gap_var
        spread = np.sqrt(np.maximum(variance, 0.0))
        tiny = spread <= 1e-12 * (np.abs(stats.removed) + np.abs(stats.gap) + 1e-300)
        p = t_sf(np.where(tiny, 0.0, difference / np.where(tiny, 1.0, spread)), stats.df)
    p = np.where(tiny, np.where(difference > 0, 0.0, 1.0), p)
    return np.where((stats.df >= 1) & np.isfinite(difference), p, np.nan)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's adjusted p-values, each row of ``p`` (1-D: one) a family; NaN p-values are left out of their family
    and stay NaN. Rejecting every hypothesis whose adjusted p is at most alpha keeps the chance of any false
    rejection in a family at most alpha."""
    rows = np.atleast_2d(p)
    order = np.argsort(rows, axis=1, kind="stable")  # NaN last
    ranked = np.take_along_axis(rows, order, axis=1)
    m = (~np.isnan(rows)).sum(axis=1, keepdims=True)
    factors = m - np.arange(rows.shape[1])[None, :]
    steps = np.fmax.accumulate(np.minimum(1.0, ranked * factors), axis=1)
    adjusted = np.empty_like(rows, dtype=np.float64)
    np.put_along_axis(adjusted, order, np.where(np.isnan(ranked), np.nan, steps), axis=1)
    return adjusted.reshape(np.shape(p))


def alpha_of(level: float) -> float:
    """The one-sided error of the test that matches an interval at ``level``: its lower end's, (1 - level) / 2."""
    return (1.0 - level) / 2.0
