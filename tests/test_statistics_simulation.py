"""The localization statistics measured on simulated studies shaped like the toy world's (a gap of 0.05 between
original and reference, seeds that move a unit's images together by 0.02, image noise 0.01): the decision rule's
false-localization rate on null concepts and the drop interval's coverage. docs/statistics.md quotes these numbers."""

import numpy as np
import pytest

from locolab.contract import decision, intervals

RESAMPLES = 1000


def _units(rng, n, draws, drops, prompts=1):
    """``draws`` independent concepts of n units (n / prompts seeds per prompt) and len(drops) windows each, as
    (n, draws * windows) columns: original, reference, window scores and each unit's prompt."""
    k = len(drops)
    prompt = np.repeat(np.arange(prompts), n // prompts)
    unit = rng.normal(0, 0.02, (n, draws)).repeat(k, axis=1)  # a seed moves all its images
    original = 0.30 + unit + rng.normal(0, 0.01, (n, draws)).repeat(k, axis=1)
    reference = 0.25 + unit + rng.normal(0, 0.01, (n, draws)).repeat(k, axis=1)
    window = original - np.tile(drops, draws) * 0.05 + rng.normal(0, 0.01, (n, draws * k))
    return original, reference, window, prompt


def _false_rate(n, drops, adjust, draws=2000, prompts=1):
    """Of ``draws`` null concepts (every window removes at most half the gap), the fraction in which any window
    localizes at threshold 0.5, at the 95% rule's one-sided 2.5%, Holm-adjusted over the concept's windows or not."""
    rng = np.random.default_rng(n)
    original, reference, window, prompt = _units(rng, n, draws, np.asarray(drops), prompts)
    p = decision.p_values(decision.paired_stats(original, reference, window, prompt, clustered=False), 0.5)
    p = p.reshape(draws, len(drops))
    if adjust:
        p = decision.holm(p)
    return float((p <= decision.alpha_of(0.95)).any(axis=1).mean())


@pytest.mark.parametrize("n", [8, 16])
def test_holm_keeps_false_localization_of_a_concept_at_the_tests_level(n):
    """50 windows that each remove exactly half the gap (the hardest null): unadjusted, some window of nearly every
    other concept localizes; adjusted over the 50, about 2.5% of concepts, measured <= 5%."""
    adjusted, unadjusted = _false_rate(n, [0.5] * 50, True), _false_rate(n, [0.5] * 50, False)

    assert adjusted <= 0.05
    assert unadjusted >= 0.3


@pytest.mark.parametrize("n", [8, 16])
def test_one_window_at_the_threshold_localizes_falsely_at_most_at_the_tests_level(n):
    assert _false_rate(n, [0.5], adjust=False, draws=4000) <= 0.05


def test_the_test_holds_its_level_with_prompts_fixed():
    """Two prompts x four seeds, the variance pooled within prompts (4 + 4 units, 6 degrees of freedom)."""
    assert _false_rate(8, [0.5] * 50, True, prompts=2) <= 0.05


def _coverage(n, prompts=1, clustered=False, draws=3000, drop=0.6):
    """How often the expanded percentile interval of the normalized drop covers the true drop."""
    rng = np.random.default_rng(100 + n)
    original, reference, window, prompt = _units(rng, n, draws, np.array([drop]), prompts)
    counts = intervals.unit_counts(prompt, clustered, RESAMPLES, rng)  # shared by the draws: each is independent
    tails = np.full(draws, intervals.design_tail(0.95, n, prompts, clustered))
    low, high = intervals.ratio_bounds(counts @ (original - window), counts @ (original - reference), 0.95, tails)
    return float(((low <= drop) & (drop <= high)).mean())


@pytest.mark.parametrize("n", [8, 16])
def test_the_95_percent_drop_interval_covers_at_least_93_percent(n):
    assert _coverage(n) >= 0.93


def test_four_units_cannot_reach_95_percent_which_is_why_8_are_required():
    """The issue's finding, reproduced: from 4 units the interval is about the units' range and covers ~87%."""
    assert 0.84 <= _coverage(4) <= 0.90


def test_seeds_resampled_within_fixed_prompts_keep_the_coverage():
    assert _coverage(8, prompts=2) >= 0.92


def _prompt_coverage(prompts, clustered, seeds=4, draws=3000):
    """Prompts that differ: each prompt's window removes 0.6 ± 0.1 (s.d. over prompts) of the gap. How often the
    interval covers the concept's drop, 0.6, over prompts like these."""
    rng = np.random.default_rng(prompts)
    n = prompts * seeds
    prompt = np.repeat(np.arange(prompts), seeds)
    unit = rng.normal(0, 0.02, (n, draws))
    original = 0.30 + unit + rng.normal(0, 0.01, (n, draws))
    reference = 0.25 + unit + rng.normal(0, 0.01, (n, draws))
    window = original - (0.6 + rng.normal(0, 0.1, (prompts, draws)))[prompt] * 0.05 + rng.normal(0, 0.01, (n, draws))
    counts = intervals.unit_counts(prompt, clustered, RESAMPLES, rng)
    tails = np.full(draws, intervals.design_tail(0.95, n, prompts, clustered))
    low, high = intervals.ratio_bounds(counts @ (original - window), counts @ (original - reference), 0.95, tails)
    return float(((low <= 0.6) & (0.6 <= high)).mean())


def test_resampling_prompts_covers_the_drop_over_prompts_that_differ():
    """8 prompts x 4 seeds: fixed prompts (seeds resampled within them) cover the prompts' own drop, not the
    concept's (~88%); resampling whole prompts covers it (~94%)."""
    assert _prompt_coverage(8, clustered=False) < 0.9
    assert _prompt_coverage(8, clustered=True) >= 0.93
