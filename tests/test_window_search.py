"""The window search: which sizes a concept's refinement sweeps, and the refinement planned from a stored first pass
(written by hand, so no model runs)."""

import pytest
from PIL import Image
from sweep_helpers import write_config

from locolab.compute.plan import build_plan
from locolab.compute.settings import Settings
from locolab.compute.sweep.config import WindowSearch, default_coarse, load_config
from locolab.compute.sweep.window_search import plan_refinement, refinement_sizes
from locolab.contract import store
from locolab.contract.catalog.registry import MODELS
from locolab.contract.store import Store, write_png_atomic, write_table
from locolab.contract.summaries import minimal_windows

PIXEL = Image.new("RGB", (1, 1))


@pytest.mark.parametrize("localizing, sizes", [
    (set(), []),  # nothing localizes up to the maximum: nothing to refine
    ({1, 5, 8}, []),  # size 1 localizes: it is the answer
    ({5, 8, 10}, [4]),  # 3 fails, 5 localizes: only 4 is unknown
    ({8, 10}, [6, 7]),
    ({10}, [9]),
])
def test_the_refinement_fills_the_gap_below_the_first_localizing_coarse_size(localizing, sizes):
    assert refinement_sizes(WindowSearch(10, default_coarse(10)), localizing) == sizes


def test_a_coarse_grid_that_skips_size_one_refines_down_to_it():
    assert refinement_sizes(WindowSearch(10, (2, 5, 10)), {2, 5}) == [1]
    assert refinement_sizes(WindowSearch(10, (2, 5, 10)), {10}) == [6, 7, 8, 9]


def test_the_default_coarse_sizes_grow_like_fibonacci_and_end_at_the_maximum():
    assert default_coarse(10) == (1, 2, 3, 5, 8, 10)
    assert default_coarse(70) == (1, 2, 3, 5, 8, 13, 21, 34, 55, 70)
    assert default_coarse(1) == (1,)


def _store_first_pass(root, config, units, localizing_start: int, localizing_size: int):
    """Every unit's scores and cases, as a sweep writes them: windows holding layers
    ``localizing_start .. + localizing_size - 1`` remove the whole gap, the others nothing."""
    end = localizing_start + localizing_size
    for unit in units:
        scores, cases = [], []
        for case in unit.cases:
            if case.kind == "original":
                score = 0.75
            elif case.kind in ("target", "all-layers"):
                score = 0.25
            else:
                holds = case.window_start <= localizing_start and case.window_start + case.window_size >= end
                score = 0.25 if holds else 0.75
            common = dict(case_id=case.case_id, run_id=config.run_id, model=config.model, family=case.family,
                          concept=case.concept, kind=case.kind, window_start=case.window_start,
                          window_size=case.window_size, seed=case.seed, method="locogen")
            scores.append({**common, "scorer_id": config.scorer, "score_text": case.score_text, "score": score})
            cases.append({**common, "prompt": case.prompt, "target": case.target})
        write_table("scores", scores, unit.unit_id, root=root)
        write_table("cases", cases, unit.unit_id, root=root)
        for case in unit.cases:  # a unit is done only with its images
            write_png_atomic(store.join(root, store.image_relpath(config.model, case.image_key)), PIXEL)


@pytest.mark.slow
def test_the_refinement_is_planned_from_the_stored_first_pass(tmp_path):
    """Coarse sizes 2 and 6 on 16 layers; the concept needs layers 8-11 (m = 4): size 2 fails, 6 localizes, so the
    refinement sweeps sizes 3, 4 and 5, with the same cases an explicit sweep of those sizes would have."""
    # A trained scorer's name: scores written by hand under the random tiny-clip would measure nothing.
    config = load_config(write_config(tmp_path / "c.yaml", seeds=list(range(8)), drop="window_sizes",
                                      scorer="openai/clip-vit-base-patch16",
                                      window_search={"max_size": 6, "coarse": [2, 6]}, families={
                                          "style": {"target": "a painting", "templates": ["{concept} style"],
                                                    "concepts": ["van gogh"]}}))
    settings = Settings.defaults(MODELS["tiny-sd1"], 2, 7.5, 32)
    first = build_plan(config, settings, 16)
    root = str(tmp_path / "root")

    assert plan_refinement(config, settings, 16, first, root).pending == 1
    _store_first_pass(root, config, first, 8, 4)
    refinement = plan_refinement(config, settings, 16, first, root)

    assert (refinement.pending, refinement.sizes) == (0, {("style", "van gogh"): [3, 4, 5]})
    cases = [case for unit in refinement.units for case in unit.cases]
    assert {case.kind for case in cases} == {"window"}
    explicit = build_plan(config, settings, 16, [3, 4, 5])
    assert {c.case_id for c in cases} == {c.case_id for u in explicit for c in u.cases if c.kind == "window"}
    # Stored, the refinement makes the run's minimal window the exact answer, which no coarse size had.
    _store_first_pass(root, config, refinement.units, 8, 4)
    (found,) = minimal_windows(Store(root).connect(), run_ids=[config.run_id]).to_pylist()
    assert (found["window_size"], found["window_start"], found["normalized_drop"]) == (4, 8, 1.0)


@pytest.mark.slow  # renders a first pass and a second one on tiny-sd1
def test_a_sweep_runs_the_refinement_it_is_handed_as_part_of_the_same_run(load, tmp_path):
    from locolab.compute.sweep.run import run_study

    config = load_config(write_config(tmp_path / "c.yaml", drop="window_sizes", window_search={"max_size": 3,
                                      "coarse": [1, 3]}, families={"style": {
                                          "target": "a painting", "templates": ["{concept} style"],
                                          "concepts": ["van gogh"]}}))
    settings = Settings.defaults(MODELS["tiny-sd1"], 2, 7.5, 32)
    first = build_plan(config, settings, 16)
    second = build_plan(config, settings, 16, [2], references=False)
    root = str(tmp_path / "root")

    stats = run_study(config, load("tiny-sd1"), first, settings, root, 16, show_progress=False,
                      follow_up=lambda: second)

    assert (stats.units_total, stats.images_generated) == (2, (3 + 16 + 14) + 15)
    con = Store(root).connect()
    sizes = con.execute("SELECT DISTINCT run_id, window_size FROM cases WHERE kind = 'window' ORDER BY 2").fetchall()
    assert sizes == [(config.run_id, 1), (config.run_id, 2), (config.run_id, 3)]
    assert con.execute("SELECT status FROM runs").fetchall() == [("finished",)]
