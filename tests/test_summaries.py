"""The localization summaries' statistics on hand-written stores: runs summarized apart and pooled only when their
settings match, the noise floor, bootstrap intervals and the rule decided on them, the all-layers reference, and the
interval arithmetic itself (t quantiles, Wilson intervals, exact identities)."""

import numpy as np
import pytest

from locolab.contract import decision, intervals, summaries
from locolab.contract.errors import UserError
from locolab.contract.store import Store, write_table

SEEDS = range(8)
SCORER = "openai/clip-vit-base-patch16"


def _rows(run_id="run1", steps=4, concept="van gogh", original=0.75, target=0.25, all_layers=None, windows=None,
          seeds=SEEDS, prompts=("a painting in the style of {}",), jitter=0.0, target_prompt="a painting",
          scorer=SCORER):
    """Score and case rows of one concept: every (prompt, seed) unit has an original, a target, optionally an
    all-layers reference, and the windows {(size, start): score} (default: 16 single layers that do nothing)."""
    windows = windows or {(1, start): original for start in range(16)}
    scores, cases = [], []
    for p, template in enumerate(prompts):
        prompt = template.format(concept)
        for seed in seeds:
            noise = jitter * (-1) ** seed * (1 + p)
            kinds = [("original", None, None, original), ("target", None, None, target)]
            kinds += [("all-layers", 0, 16, all_layers)] if all_layers is not None else []
            kinds += [("window", start, size, score) for (size, start), score in windows.items()]
            for kind, start, size, score in kinds:
                case_id = f"{run_id}|{concept}|{p}|{seed}|{kind}|{start}|{size}"
                common = dict(case_id=case_id, run_id=run_id, model="tiny-sd1", family="style", concept=concept,
                              kind=kind, window_start=start, window_size=size, seed=seed, method="locogen")
                scores.append({**common, "scorer_id": scorer, "score_text": f"style of {concept}",
                               "score": score + noise})
                cases.append({**common, "prompt": prompt, "target": target_prompt, "steps": steps,
                              "guidance": 7.5, "height": 64, "width": 64})
    return scores, cases


def _store(root, *concepts, run_id="run1", steps=4, scheduler="PNDMScheduler", reference="target"):
    scores, cases = [], []
    for rows in concepts:
        scores += rows[0]
        cases += rows[1]
    write_table("scores", scores, f"{run_id}-scores", root=root)
    write_table("cases", cases, f"{run_id}-cases", root=root)
    write_table("runs", [dict(run_id=run_id, model="tiny-sd1", status="finished", shard=0, num_shards=1,
                              method="locogen", scheduler=scheduler, reference=reference)], f"{run_id}-0", root=root)
    return Store(root).connect()


def _by_window(table):
    return {(row["window_size"], row["window_start"]): row for row in table.to_pylist()}


def test_a_window_that_removes_the_gap_in_every_unit_localizes_with_its_interval(tmp_path):
    con = _store(tmp_path, _rows(windows={(1, 8): 0.25, (1, 9): 0.5, (1, 10): 0.75}, jitter=0.01))

    rows = _by_window(summaries.localization(con))

    assert rows[1, 8]["normalized_drop"] == pytest.approx(1.0)
    assert rows[1, 8]["drop_low"] <= 1.0 <= rows[1, 8]["drop_high"]
    assert (rows[1, 8]["localizes"], rows[1, 9]["localizes"], rows[1, 10]["localizes"]) == (True, False, False)
    assert rows[1, 9]["normalized_drop"] == pytest.approx(0.5)
    assert rows[1, 8]["verdict"].startswith("localizes: drop 1.00, 95% interval [")
    assert (rows[1, 8]["n_units"], rows[1, 8]["n_seeds"], rows[1, 8]["n_images"]) == (8, 8, 8)
    assert rows[1, 8]["gap"] == pytest.approx(0.5) and rows[1, 8]["measurable"]


def test_localizing_is_decided_on_the_interval_not_the_point(tmp_path):
    """Seeds disagree: two units lose the whole gap, two lose nothing. The point (0.5 of the gap) reaches the
    threshold; the interval does not."""
    scores, cases = _rows(windows={(1, 8): 0.25})
    for row in scores:
        if row["kind"] == "window" and row["seed"] % 2:
            row["score"] = 0.75
    con = _store(tmp_path, (scores, cases))

    row = _by_window(summaries.localization(con))[1, 8]

    assert row["normalized_drop"] == pytest.approx(0.5) and row["drop_low"] < 0.5 < row["drop_high"]
    assert not row["localizes"]
    assert row["verdict"].startswith("not shown to localize: drop 0.50, 95% interval [")
    assert summaries.minimal_windows(con).num_rows == 0
    (concept,) = summaries.concept_summary(con).to_pylist()
    assert concept["verdict"].startswith("no window localizes; strongest layer 8 (m=1): not shown to localize")


@pytest.mark.parametrize("changes, reason", [
    ({"seeds": range(7)}, "7 prompt x seed units, at least 8 are needed to measure noise (add seeds or prompts)"),
    ({"original": 0.26}, "original - reference gap 0.0100 is below the minimum 0.02"),
    ({"original": 0.28, "jitter": 0.02},
     "original - reference gap 0.0300 is not clearly above noise: its 95% interval [0.0000, 0.0627] reaches below "
     "0.02"),
])
def test_a_concept_without_a_clear_gap_is_not_measurable_and_says_why(tmp_path, changes, reason):
    scores, cases = _rows(windows={(1, 8): 0.25}, **changes)
    for row in scores:
        if row["kind"] == "target":  # the jitter moves the target against the original: a noisy gap
            row["score"] = 0.25 - (row["score"] - 0.25)
    con = _store(tmp_path, (scores, cases))

    row = _by_window(summaries.localization(con))[1, 8]

    assert (row["measurable"], row["localizes"], row["not_measurable"]) == (False, False, reason)
    assert row["verdict"] == f"not measurable: {reason}"
    (concept,) = summaries.concept_summary(con).to_pylist()
    assert concept["window_size"] is None and concept["verdict"] == f"not measurable: {reason}"


def test_the_random_weight_scorer_never_makes_a_concept_measurable(tmp_path):
    """tiny-clip scores are consistent but meaningless: a planted localization it scores is reported as such."""
    con = _store(tmp_path, _rows(windows={(1, 8): 0.25}, scorer="tiny-clip"))

    row = _by_window(summaries.localization(con))[1, 8]
    planted = _by_window(summaries.localization(con, meaningless_scorers=()))[1, 8]

    assert (row["measurable"], row["localizes"]) == (False, False)
    assert row["not_measurable"] == ("scored by tiny-clip, a CLIP with random weights whose scores mean nothing (it "
                                     "tests the machinery; score with a trained CLIP)")
    assert (planted["measurable"], planted["localizes"], planted["normalized_drop"]) == (True, True, 1.0)


def test_runs_are_summarized_apart_and_pooled_only_when_their_settings_match(tmp_path):
    write_table("scores", _rows("run1", seeds=range(4), windows={(1, 8): 0.25})[0], "a", root=tmp_path)
    write_table("cases", _rows("run1", seeds=range(4), windows={(1, 8): 0.25})[1], "a", root=tmp_path)
    write_table("scores", _rows("run2", seeds=range(4, 8), windows={(1, 8): 0.25})[0], "b", root=tmp_path)
    write_table("cases", _rows("run2", seeds=range(4, 8), windows={(1, 8): 0.25})[1], "b", root=tmp_path)
    con = Store(tmp_path).connect()

    apart = summaries.concept_summary(con).to_pylist()
    pooled = summaries.concept_summary(con, run_ids=["run2", "run1"]).to_pylist()

    assert [(r["run_id"], r["n_units"], r["localizes"]) for r in apart] == [("run1", 4, False), ("run2", 4, False)]
    assert [(r["run_id"], r["n_units"], r["localizes"]) for r in pooled] == [("run1+run2", 8, True)]


@pytest.mark.parametrize("other, difference", [
    (dict(steps=2), "differ in steps (run1: 4; run2: 2)"),
    (dict(scheduler="DDIMScheduler"), "differ in scheduler (run1: 'PNDMScheduler'; run2: 'DDIMScheduler')"),
    (dict(reference="all-layers"), "differ in reference (run1: 'target'; run2: 'all-layers')"),
    (dict(target_prompt="an image"), "differ in the target of style / van gogh, prompt 'a painting in the style of "
                                     "van gogh' (run1: 'a painting'; run2: 'an image')"),
])
def test_pooling_runs_that_differ_names_the_setting(tmp_path, other, difference):
    rows_settings = {k: v for k, v in other.items() if k in ("steps", "target_prompt")}
    run_settings = {k: v for k, v in other.items() if k in ("steps", "scheduler", "reference")}
    _store(tmp_path, _rows("run1"), run_id="run1")
    con = _store(tmp_path, _rows("run2", seeds=[5, 6], **rows_settings), run_id="run2", **run_settings)

    with pytest.raises(UserError) as error:
        summaries.localization(con, run_ids=["run1", "run2"])

    assert str(error.value) == f"cannot pool 2 runs: runs run1 and run2 {difference}; summarize each run on its own"


def test_the_all_layers_reference_normalizes_where_the_run_says_so(tmp_path):
    """SD-XL-like: the plain target prompt (0.1) is out of reach; the all-layers swap (0.35) is the reference, and a
    window equal to it in every unit has drop exactly 1."""
    con = _store(tmp_path, _rows(target=0.1, all_layers=0.35, windows={(16, 0): 0.35, (1, 8): 0.55}, jitter=0.01),
                 reference="all-layers")

    rows = _by_window(summaries.localization(con))

    assert rows[16, 0]["normalized_drop"] == 1.0 and rows[16, 0]["localizes"]
    assert rows[1, 8]["normalized_drop"] == pytest.approx(0.5)
    assert (rows[1, 8]["reference"], rows[1, 8]["reference_score"]) == ("all-layers", pytest.approx(0.35))
    assert (rows[1, 8]["target_score"], rows[1, 8]["all_layers_score"]) == (pytest.approx(0.1), pytest.approx(0.35))


def test_intervals_are_reproducible_and_depend_on_the_seed_and_level(tmp_path):
    rng = np.random.default_rng(3)
    scores, cases = _rows(windows={(1, 8): 0.4}, seeds=range(8))
    for row in scores:
        row["score"] += rng.normal(0, 0.03)
    con = _store(tmp_path, (scores, cases))

    first = _by_window(summaries.localization(con))[1, 8]
    again = _by_window(summaries.localization(con))[1, 8]
    other_seed = _by_window(summaries.localization(con, seed=1))[1, 8]
    narrower = _by_window(summaries.localization(con, level=0.8))[1, 8]

    assert (first["drop_low"], first["drop_high"]) == (again["drop_low"], again["drop_high"])
    assert (first["drop_low"], first["drop_high"]) != (other_seed["drop_low"], other_seed["drop_high"])
    assert first["drop_low"] < narrower["drop_low"] <= first["normalized_drop"] <= narrower["drop_high"] \
        < first["drop_high"]


def test_the_run_settings_list_each_run_newest_first_with_what_pooling_compares(tmp_path):
    con = _store(tmp_path, _rows())

    (run,) = summaries.run_settings(con).to_pylist()

    assert (run["run_id"], run["finished"], run["steps"], run["scheduler"], run["reference"], run["scorer_id"]) == (
        "run1", True, [4], ["PNDMScheduler"], ["target"], [SCORER])
    assert (run["seeds"], run["prompts"], run["window_sizes"]) == ([0, 1, 2, 3, 4, 5, 6, 7], 1, [1])
    assert summaries.newest_finished_run(con, "tiny-sd1") == "run1"


def test_drop_intervals_of_a_window_equal_to_the_reference_are_exactly_one():
    rng = np.random.default_rng(0)
    original, reference = rng.normal(0.3, 0.02, 6), rng.normal(0.2, 0.02, 6)
    windows = np.stack([reference, original, (original + reference) / 2], axis=1)
    windows[0, 2] = np.nan  # a window missing from one unit uses the other five

    est = intervals.drop_intervals(original, reference, windows, 0.95, 500, intervals.rng_for(0, "x"))

    assert est.drop[0] == 1.0 and est.drop[1] == 0.0
    assert est.drop[2] == pytest.approx(0.5)
    assert list(est.n_images) == [6, 6, 5]
    assert est.drop_low[0] == pytest.approx(1.0) and est.drop_high[0] == pytest.approx(1.0)
    assert est.gap == pytest.approx(float((original - reference).mean()))


@pytest.mark.parametrize("df, quantile", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (7, 2.3646), (30, 2.0423)])
def test_t_quantiles_match_the_tables(df, quantile):
    assert intervals.t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-4)


def test_the_expanded_bootstrap_reads_further_into_the_tails_for_few_units():
    tails = [intervals.expanded_tail(0.95, n) for n in (4, 8, 16, 1000)]
    assert tails == sorted(tails) and tails[-1] == pytest.approx(0.025, abs=2e-4)
    assert tails[1] == pytest.approx(0.00574, abs=1e-5)


@pytest.mark.parametrize("successes, n, low, high", [(1, 2, 0.0945, 0.9055), (0, 4, 0.0, 0.4899),
                                                     (8, 8, 0.6756, 1.0), (3, 4, 0.3006, 0.9544)])
def test_wilson_intervals_match_the_closed_form(successes, n, low, high):
    assert intervals.wilson(successes, n, 0.95) == pytest.approx((low, high), abs=1e-4)


def test_a_run_the_root_does_not_hold_is_named(tmp_path):
    con = _store(tmp_path, _rows())

    with pytest.raises(UserError, match=r"^no locogen scores for run nope: use a run id of the root \(e\.g\. run1\)$"):
        summaries.concept_summary(con, run_ids=["nope"])


def _removing(fractions, seeds=SEEDS, **rows):
    """One concept whose window 8 removes ``fractions[i % len]`` of the gap 0.5 in seed i (the other 15 layers
    nothing)."""
    scores, cases = _rows(seeds=seeds, **rows)
    for row in scores:
        if row["kind"] == "window" and row["window_start"] == 8:
            row["score"] = 0.75 - 0.5 * fractions[row["seed"] % len(fractions)]
    return scores, cases


@pytest.mark.parametrize("n, p", [(1, 0.0), (2, 1.0), (7, 0.0165), (30, 0.5)])
def test_t_tail_probabilities_match_the_tables(n, p):
    t = {1: 12.7062, 2: -1e9, 7: 2.6458, 30: 0.0}[n]  # t_(0.975, 1); far below; t of the marginal window below
    expected = {1: 0.025}.get(n, p)
    assert float(decision.t_sf(np.array([t]), np.array([n]))[0]) == pytest.approx(expected, abs=2e-4)


def test_holm_adjusts_over_the_concepts_windows_and_says_so(tmp_path):
    """Window 8 removes 0.8 and 0.5 of the gap in alternate seeds (drop 0.65): its paired test at 0.5 gives
    p = 0.0165, below 0.025 alone but not once adjusted over the concept's 16 windows."""
    con = _store(tmp_path, _removing([0.8, 0.5]))

    adjusted = _by_window(summaries.localization(con))[1, 8]
    alone = _by_window(summaries.localization(con, adjust="none"))[1, 8]

    assert adjusted["p_value"] == pytest.approx(0.0165, abs=5e-4) and adjusted["adjusted_over"] == 16
    assert adjusted["p_adjusted"] == pytest.approx(16 * adjusted["p_value"])
    assert (adjusted["localizes"], alone["localizes"]) == (False, True)
    assert adjusted["verdict"] == ("not shown to localize: drop 0.65, 95% interval [0.54, 0.77]; paired test at 0.5: "
                                   "p = 0.017, adjusted over 16 windows (Holm) p = 0.27, > 0.025; 8 units")
    assert alone["verdict"].endswith("paired test at 0.5: p = 0.017, unadjusted, <= 0.025; 8 units")


def test_a_window_chosen_on_half_the_seeds_is_measured_on_the_other_half(tmp_path):
    """16 seeds: 8 per half. Layers 8 and 9 both remove the whole gap: both are listed, the first reported."""
    scores, cases = _rows(seeds=range(16), windows={**{(1, s): 0.75 for s in range(16)}, (1, 8): 0.25, (1, 9): 0.25},
                          jitter=0.01)
    con = _store(tmp_path, (scores, cases))

    (confirmed,) = summaries.concept_summary(con).to_pylist()
    (optimistic,) = summaries.concept_summary(con, selection="all").to_pylist()

    assert (confirmed["selection"], confirmed["localizes"], confirmed["confirm_units"]) == (
        "confirmed on held-out seeds", True, 8)
    assert confirmed["localizing_windows"] == ["layer 8", "layer 9"] == optimistic["localizing_windows"]
    assert confirmed["verdict"].startswith("localizes at layer 8 (m=1) (also layer 9), confirmed on held-out seeds: "
                                           "drop 1.00, 95% interval [1.00, 1.00]; held-out paired test p = 0 "
                                           "adjusted over 2 windows; chosen on seeds 0, 2, 4, 6, 8, 10, 12, 14 (8 "
                                           "units), measured on seeds 1, 3, 5, 7, 9, 11, 13, 15 (8 units)")
    assert optimistic["selection"] == "selected (optimistic)"
    assert optimistic["verdict"].startswith("localizes at layer 8 (m=1) (also layer 9), selected (optimistic): drop "
                                            "1.00")


def test_a_window_that_localizes_only_on_the_choosing_half_is_not_confirmed(tmp_path):
    """Layer 8 removes the whole gap in the even seeds (the choosing half) and nothing in the odd ones."""
    con = _store(tmp_path, _removing([1.0, 0.0], seeds=range(16), jitter=0.01))

    (concept,) = summaries.concept_summary(con).to_pylist()

    assert (concept["localizes"], concept["localizing_windows"]) == (False, [])
    assert concept["verdict"].startswith("not confirmed: layer 8 (m=1) localizes on the choosing half but not on "
                                         "the held-out one: drop -0.02, 95% interval")


@pytest.mark.parametrize("prompts, text", [(2, "16 units of 2 prompts, prompts fixed"),
                                           (5, "40 units of 5 prompts, prompts resampled")])
def test_verdicts_say_whether_prompts_were_fixed_or_resampled(tmp_path, prompts, text):
    templates = tuple(f"a painting {i} in the style of {{}}" for i in range(prompts))
    con = _store(tmp_path, _rows(windows={(1, 8): 0.25, (1, 9): 0.75}, prompts=templates, jitter=0.01))

    rows = _by_window(summaries.localization(con))

    assert rows[1, 8]["clustered"] == (prompts >= summaries.CLUSTER_PROMPTS)
    assert rows[1, 8]["localizes"] and rows[1, 8]["verdict"].endswith(text)
    assert rows[1, 9]["verdict"].endswith(text)


def test_the_summary_command_states_units_adjustment_and_selection(tmp_path, capsys):
    from locolab.compute.cli import main

    _store(tmp_path, _rows(windows={**{(1, s): 0.75 for s in range(16)}, (1, 8): 0.25}, jitter=0.01))

    assert main(["summary", "--artifacts", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    assert ("a paired one-sided test over prompt x seed units shows it removes more than 0.5 of the gap at error "
            "0.025, Holm-adjusted over the concept's windows") in out
    (line,) = [line for line in out.splitlines() if "style / van gogh" in line]
    assert line.split()[4] == "8"  # units
    assert line.endswith("localizes at layer 8 (m=1), selected (optimistic): drop 1.00, 95% interval [1.00, "
                         "1.00]; paired test at 0.5: p = 0, adjusted over 16 windows (Holm) p = 0, <= 0.025; 8 units")


def test_a_single_seed_leaves_nothing_to_test_or_to_hold_out(tmp_path):
    con = _store(tmp_path, _rows(seeds=[0], windows={(1, 8): 0.25}))

    row = _by_window(summaries.localization(con, min_units=1))[1, 8]

    assert (row["test_units"], row["test_df"], row["confirm_test_units"], row["p_value"]) == (1, 0, 0, None)
    assert not row["localizes"] and row["normalized_drop"] == 1.0
