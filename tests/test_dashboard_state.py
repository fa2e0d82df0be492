"""The pages' state objects and the pure functions they feed, without AppTest: the Layer map's verdicts, titles,
gallery links and bounds, the Gallery's drops and recoveries, Run an edit's pre-fill, the Edits page's comparison
(on the hand-written run with known answers, ``add_planted_run``), and no page function reading page globals."""

import ast
import builtins
import dataclasses
from pathlib import Path

import pyarrow as pa
import pytest
from dashboard_fixtures import PLANTED, PLANTED_SCORER, add_planted_run

from locolab.contract import bounds, queries
from locolab.contract.errors import UserError
from locolab.contract.store import Store
from locolab.dashboard import edit_tables, edit_view, gallery_view, job_view, map_view, overview_view, url_state

VIEWS = Path(__file__).resolve().parents[1] / "dashboard" / "views"
VAN_GOGH, BLUE = ("style", "van gogh"), ("color", "blue")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted-state")
    add_planted_run(root)
    return Store(root).connect()


@pytest.fixture(scope="module")
def loc(store):
    return queries.localization_table(store, PLANTED, 0.95)


@pytest.fixture(scope="module")
def run(store):
    (row,) = queries.run_list(store).to_pylist()
    return row


def state(run=None, **changes) -> map_view.MapState:
    values = dict(model="tiny-sd1", method=map_view.LOCOGEN, run_id=PLANTED, scorer=PLANTED_SCORER, threshold=0.5,
                  level=0.95, run=run)
    return map_view.MapState(**{**values, **changes})


@pytest.mark.parametrize("page", sorted(VIEWS.glob("*.py")), ids=lambda path: path.name)
def test_no_page_defines_a_function_or_a_lambda_that_reads_page_globals(page):
    tree = ast.parse(page.read_text())
    imported = {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import | ast.ImportFrom) for alias in node.names}

    assert not [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    for node in (n for n in ast.walk(tree) if isinstance(n, ast.Lambda)):
        own = {arg.arg for arg in node.args.args}
        read = {n.id for n in ast.walk(node.body) if isinstance(n, ast.Name)}
        assert read <= own | imported | set(dir(builtins)), f"line {node.lineno} reads {read - own - imported}"


def test_each_state_is_frozen():
    for made in (state(), gallery_view.GalleryState("m", "style", "x", None),
                 job_view.FormState("m", "style", "x"), edit_tables.EditsState({"edit_id": "e"})):
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.model = "other"  # every state, whatever its fields: no attribute may be set


def test_the_verdict_table_gives_each_concepts_window_drop_and_gap_with_intervals(loc):
    rows = map_view.verdict_table(map_view.only(loc, scorer_id=PLANTED_SCORER), 0.5)

    assert [(r["concept"], r["localizes"], r["window"], r["m"], r["drop [interval]"], r["gap [interval]"], r["units"])
            for r in rows] == [("blue", False, "none", None, "–", "0.010 [0.010, 0.010]", 8),
                               ("van gogh", True, "layers 8–9", 2, "1.000 [1.000, 1.000]", "0.500 [0.500, 0.500]", 8)]
    assert rows[0]["verdict"].startswith("not measurable: original - reference gap 0.0100 is below the minimum")
    assert map_view.interval_text(0.75, 0.0, 1.0) == "0.750 [0.000, 1.000]"
    assert (map_view.interval_text(None, None, None), map_view.interval_text(0.5, None, None)) == ("–", "0.500")


def test_the_settings_line_names_every_setting_of_the_run(run):
    rows = dict(map_view.settings_rows(run))

    assert (rows["run"], rows["seeds"], rows["window sizes"], rows["normalized by"]) == (
        PLANTED, "0, 1, 2, 3, 4, 5, 6, 7", "1, 2", "target prompt")
    assert map_view.settings_line(run).startswith(f"**run** {PLANTED} · **status** finished · **created** ")


def test_titles_and_links_come_from_the_state_alone(run):
    shown = state(run)

    assert map_view.about(shown) == f"tiny-sd1 · run {PLANTED} · scorer {PLANTED_SCORER} · seeds 0, 1, 2, 3, 4, 5, 6, 7"
    assert map_view.about(shown, VAN_GOGH, seeds=[0]) == (
        f"tiny-sd1 · run {PLANTED} · style · van gogh · scorer {PLANTED_SCORER} · seeds 0")
    assert map_view.figure_title(shown, "LocoGen heat map", m=2) == (
        f"LocoGen heat map · model tiny-sd1 · run {PLANTED} · scorer {PLANTED_SCORER} · seeds 0, 1, 2, 3, 4, 5, 6, 7 · "
        "m 2 · threshold 0.5 · interval 95%")
    # A tracing figure names the trace run and its seeds, and no interval level.
    traced = state(run, trace_run="t1", traced={"seeds": [7]}, threshold=0.25)
    assert map_view.figure_title(traced, "Causal tracing map", run="t1") == (
        f"Causal tracing map · model tiny-sd1 · run t1 · scorer {PLANTED_SCORER} · seed 7 · threshold 0.25")
    assert map_view.gallery_link(shown, *VAN_GOGH, 2, 8) == {
        "model": "tiny-sd1", "family": "style", "concept": "van gogh", "scorer": PLANTED_SCORER, "images": "windows",
        "run": PLANTED, "level": "0.95", "threshold": "0.5", "m": "2", "window": "8"}


def test_the_window_selector_starts_on_the_minimal_window_else_the_largest_drop(loc):
    minimal = queries.minimal_windows(loc, PLANTED_SCORER, 0.5)
    ones, twos = (queries.layer_cells(loc, PLANTED_SCORER, m, 0.5) for m in (1, 2))

    # m = 1: nothing localizes, layer 8 has the largest drop (0.75); m = 2: the minimal window 8-9.
    assert map_view.top(ones, VAN_GOGH, "normalized_drop")["normalized_drop"] == 0.75
    assert map_view.first_window(ones, minimal, VAN_GOGH, 1, list(range(16))) == 8
    assert map_view.first_window(twos, minimal, VAN_GOGH, 2, list(range(15))) == 8
    assert map_view.first_window(twos, minimal, VAN_GOGH, 2, [0, 1]) == 0  # not offered: the first
    assert map_view.first_window(twos, minimal, VAN_GOGH, 2, []) is None
    assert (map_view.count(ones, VAN_GOGH, "normalized_drop", 0.5), map_view.count(twos, VAN_GOGH, "normalized_drop",
                                                                                    0.5)) == (1, 1)
    assert map_view.shown(map_view.top(ones, VAN_GOGH, "normalized_drop"), "window_start", "normalized_drop") == \
        "8 (0.75)"
    assert map_view.unmeasurable_note(ones) == ("Grey rows, not measurable: color · blue (original - reference gap "
                                                "0.0100 is below the minimum 0.02).")
    assert map_view.unmeasurable_note(map_view.only(ones, concept="van gogh")) is None


def test_within_bounds_drops_rows_outside_the_layers_and_concepts_past_the_limit():
    n = bounds.MAX_ROWS + 3
    trace = pa.table({"model": ["m"] * (n + 1), "family": ["style"] * (n + 1),
                      "concept": [f"c{i:04d}" for i in range(n)] + ["wide"],
                      "site": [0] * n + [bounds.MAX_LAYERS]})
    contrib = trace.slice(0, 0)
    loc = pa.table({"model": ["m", "m"], "family": ["style"] * 2, "concept": ["c0000", "c0001"],
                    "window_start": [bounds.MAX_LAYERS - 2, bounds.MAX_LAYERS - 1], "window_size": [2, 2]})

    kept_loc, kept_trace, kept_contrib, dropped = map_view.within_bounds(loc, trace, contrib)

    assert dropped == 3 and kept_contrib.num_rows == 0
    assert kept_trace["concept"].to_pylist() == [f"c{i:04d}" for i in range(bounds.MAX_ROWS)]
    assert kept_loc["window_start"].to_pylist() == [bounds.MAX_LAYERS - 2]  # 511-512 would leave the model
    assert map_view.within_bounds(None, trace.slice(0, 2), contrib)[1:] == (trace.slice(0, 2), contrib, 0)


def test_intervention_and_side_by_side_rows_read_the_states_model_scorer_and_threshold():
    top_k = pa.table({"model": ["tiny-sd1", "tiny-sd1", "other"], "scorer_id": ["s", "s", "s"], "k": [2, 3, 2],
                      "family": ["style"] * 3, "concept": ["van gogh"] * 3, "blocks": ["8,9", "7,8,9", "1,2"],
                      "normalized_drop": [0.6, 0.9, 0.1], "n_images": [4, 4, 4], "score_mean": [0.4, 0.3, 0.7],
                      "original_score": [0.75] * 3, "target_score": [0.25] * 3})
    shown = state(scorer="s", threshold=0.65)

    rows = map_view.intervention_rows(top_k, shown, 2, [VAN_GOGH, BLUE])

    assert [(r["concept"], r["sites fed the target"], r["drop"], r["drop ≥ 0.65"]) for r in rows] == [
        ("style · van gogh", "8,9", 0.6, False), ("color · blue", None, None, None)]
    cells = pa.table({"family": ["style"], "concept": ["van gogh"], "window_start": [8], "normalized_drop": [0.8]})
    assert map_view.beside_rows(cells, rows, [VAN_GOGH], 2) == [{
        "concept": "style · van gogh", "LocoGen strongest window": "8 (0.80)", "top-2 sites": "8,9",
        "top-2 drop": 0.6}]


def test_the_gallery_marks_each_windows_drop_from_the_state(loc):
    drops = gallery_view.drop_texts(loc, gallery_view.GalleryState("tiny-sd1", *VAN_GOGH, PLANTED_SCORER), 2, 0.5)

    assert drops[8] == "drop 1.000 [1.000, 1.000] ●" and drops[7] == "drop 0.000 [0.000, 0.000]" and len(drops) == 15
    ones = gallery_view.drop_texts(loc, gallery_view.GalleryState("tiny-sd1", *VAN_GOGH, PLANTED_SCORER), 1, 0.5)
    assert ones[8] == "drop 0.750 [0.375, 1.000]"  # the paired test does not carry it above the threshold: no mark
    blue = gallery_view.drop_texts(loc, gallery_view.GalleryState("tiny-sd1", *BLUE, PLANTED_SCORER), 1, 0.5)
    assert set(blue.values()) == {"not measurable"} and len(blue) == 16
    # The Gallery opens on the minimal window (8-9 at m = 2), at m = 1 on the largest drop (layer 8, not localizing).
    van_gogh = gallery_view.GalleryState("tiny-sd1", *VAN_GOGH, PLANTED_SCORER)
    assert [gallery_view.strongest_window(loc, van_gogh, m, 0.5) for m in (2, 1)] == [8, 8]
    assert gallery_view.strongest_window(loc, van_gogh, 3, 0.5) is None
    cases = [{"seed": 0, "score": 0.25}, {"seed": 1, "score": 0.5}, {"seed": 2, "score": None}]
    assert gallery_view.row_stat(cases, [0, 1, 2], "drop 1.000") == "drop 1.000 · mean score 0.3750"
    assert gallery_view.row_stat(cases, [2]) == ""


def test_the_gallery_flags_untraceable_sites():
    cells = pa.table({"family": ["style"] * 3 + ["color"], "concept": ["van gogh"] * 3 + ["blue"],
                      "site": [0, 1, 2, 0], "recovery": [0.5, None, 0.25, 0.9],
                      "corruption_gap": [0.2, 0.2, 0.001, 0.2]})

    found = gallery_view.recovery_texts(cells, gallery_view.GalleryState("m", *VAN_GOGH, "s"))

    assert found == {0: "recovery 0.500", 1: "–", 2: "recovery 0.250 (untraceable: gap +0.001)"}


def test_run_an_edit_prefills_the_layers_of_the_concepts_minimal_window(store, loc):
    runs = queries.run_list(store)
    form = job_view.FormState("tiny-sd1", *VAN_GOGH, 0.5, chosen_run="someone-elses")

    assert job_view.source_run(runs, form) == PLANTED  # not the model's run: its newest finished one
    assert job_view.localized_layers(loc, form, 16) == [8, 9]
    assert job_view.localized_layers(loc, form, 9) == [8]  # inside the model
    assert job_view.localized_layers(loc, job_view.FormState("tiny-sd1", *BLUE), 16) == []
    # A window that removes exactly the whole gap does not remove more than all of it: the paired test is strict.
    assert job_view.localized_layers(loc, dataclasses.replace(form, threshold=1.0), 16) == []
    assert (job_view.layer_count("tiny-sd1", []), job_view.layer_count("unknown", [3, 7]),
            job_view.layer_count("unknown", [])) == (16, 8, job_view.DEFAULT_LAYERS)


def test_the_seeds_box_reads_comma_separated_distinct_integers():
    assert job_view.parse_seeds(" 3, 1,,2 ") == (3, 1, 2)
    with pytest.raises(UserError, match="^seeds 'a,b': write comma-separated integers, e.g. 0,1$"):
        job_view.parse_seeds("a,b")
    with pytest.raises(UserError, match="^seeds: list each seed once$"):
        job_view.parse_seeds("1,1")
    with pytest.raises(UserError, match=f"^{bounds.MAX_SEEDS + 1} seeds: give at most {bounds.MAX_SEEDS}$"):
        job_view.parse_seeds(",".join(map(str, range(bounds.MAX_SEEDS + 1))))


def record(edit_id: str, method: str, evals: list[dict], concept: str = "van gogh") -> dict:
    return {"edit_id": edit_id, "model": "tiny-sd1", "family": "style", "concept": concept, "method": method,
            "layers": [8, 9], "lambda": 0.01, "evals": evals, "eval": evals[0] if evals else None}


def test_methods_are_compared_only_under_the_chosen_evaluations_settings():
    chosen = {"eval_id": "e1", "efficacy_score_drop": 0.5, "seeds": [0]}
    edits = [record("a-neuron", "neuron", [{"eval_id": "e1", "efficacy_score_drop": 0.25}]),
             record("b-loco", "loco", [{"eval_id": "e2"}, chosen]),
             record("c-all", "all-layers", [{"eval_id": "e2"}]),  # other settings only
             record("d-loco", "loco", [{"eval_id": "e1"}], concept="monet"),  # another concept
             record("e-quickfix", "diffquickfix", [{"eval_id": "e1", "efficacy_score_drop": 0.75}])]
    shown = edit_tables.EditsState(edits[1], chosen)

    same = edit_tables.compared_edits(shown, edits)

    assert shown.eval_id == "e1" and edit_tables.EditsState(edits[1]).eval_id is None
    assert [(r["edit_id"], e["eval_id"]) for r, e in same] == [("b-loco", "e1"), ("a-neuron", "e1"),
                                                               ("e-quickfix", "e1")]
    settings, rows = edit_tables.compared_rows(same)
    assert [(row["method"], row["efficacy_score_drop"], row["edited"]) for row in rows] == [
        ("loco", 0.5, "layers 8–9"), ("neuron", 0.25, "layers 8–9"), ("diffquickfix", 0.75, "layers 8–9")]
    assert list(rows[0])[:7] == ["method", *edit_view.COMPARED]  # the settings first
    assert edit_tables.compared_edits(edit_tables.EditsState(edits[1]), edits) == []  # not evaluated: nothing
    assert edit_tables.edit_label({"b-loco": edits[1]}, "b-loco") == "van gogh · loco · b-loco"
    row = edit_tables.summary_row(edits[1])
    assert (row["edited"], row["λ / top-k"], row["evals"], row["evaluation"]) == ("layers 8–9", 0.01, 2, "e2")


def test_a_stored_group_name_is_shown_literally_in_its_tab_label():
    assert edit_view.group_label("efficacy") == "efficacy (the edit's own prompts)"
    assert edit_view.group_label("[click](http://evil.example) **bold**") == (
        "\\[click\\](http\\://evil.example) \\*\\*bold\\*\\*")


def test_a_page_arrived_at_shows_the_urls_view_completed_with_what_the_other_pages_showed():
    shared = {"model": "tiny-sd1", "run": "r1", "family": "style", "concept": "van gogh", "m": "2", "threshold": "0.7"}

    # The top navigation's link holds no query string: everything is carried.
    assert url_state.carried(shared, {}) == shared
    # The URL's own values come first; a concept travels as family and name together.
    assert url_state.carried(shared, {"m": "1", "concept": "blue", "family": "color"}) == {
        **shared, "m": "1", "family": "color", "concept": "blue"}
    assert url_state.carried(shared, {"concept": "blue"}) == {
        "model": "tiny-sd1", "run": "r1", "m": "2", "threshold": "0.7", "concept": "blue"}
    assert set(url_state.SHARED) >= {"model", "run", "family", "concept", "m", "threshold"}


def test_the_gallerys_seeds_travel_as_text_and_only_available_seeds_are_taken():
    assert gallery_view.seeds_text([0, 2, 3]) == "0,2,3"
    assert gallery_view.wanted_seeds("0,2,3", [0, 1, 2, 3]) == [0, 2, 3]
    assert gallery_view.wanted_seeds("2,0", [0, 1, 2]) == [2, 0]
    for text in ("0,9", "a,1", "", None, ","):
        assert gallery_view.wanted_seeds(text, [0, 1, 2]) is None


def test_the_overview_headline_counts_the_concepts_that_localize(loc):
    # Van gogh's window 8-9 removes the whole gap in every seed; blue's gap is too small to measure.
    assert overview_view.localized(loc, 0.5) == (1, 2, PLANTED_SCORER)
    assert overview_view.localized(loc.slice(0, 0), 0.5) == (0, 0, None)
    # The researcher's last threshold and level when the Layer map offers them, else its defaults.
    assert overview_view.judged_at("0.7", "0.9") == (0.7, 0.9)
    assert overview_view.judged_at(None, None) == overview_view.judged_at("7", "0.5") == (0.5, 0.95)


def test_overview_rows_link_to_the_page_that_shows_them():
    sweep = {"method": "locogen", "model": "tiny-sd1", "run_id": "r 1"}
    assert overview_view.run_link(sweep) == "layer_map?view=locogen&model=tiny-sd1&run=r+1"
    assert overview_view.run_link({**sweep, "method": "trace"}) == \
        "layer_map?view=tracing&model=tiny-sd1&trace_run=r+1"
    assert overview_view.run_link({**sweep, "method": "attention-contribution"}) == \
        "layer_map?view=contribution&model=tiny-sd1"
    assert overview_view.edit_link("van gogh-loco-1") == "edits?edit=van+gogh-loco-1"
