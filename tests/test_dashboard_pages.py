"""Every dashboard page, driven with Streamlit's AppTest against a real tiny sweep, a real causal trace and real
edits by all four methods, an empty root, a root with a corrupt Parquet file and a root from a newer LocoLab."""

import json
import re
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dashboard_fixtures import (
    MAIN,
    PLANTED,
    add_attacked_evaluation,
    add_corrupt_part,
    add_damaged_summary,
    add_foreign_part,
    add_newer_part,
    add_planted_run,
    add_scrambled_part,
    add_second_evaluation,
    copy_root,
    heat_grid,
    layer,
    real_root,
    row_labels,
    rows_of,
    tooltips,
)
from streamlit import config
from streamlit.testing.v1 import AppTest

from locolab.contract import queries
from locolab.contract.figures import row_label
from locolab.contract.store import Store, write_table
from locolab.contract.summaries import (
    contribution_map,
    localization,
    minimal_windows,
    top_k_interventions,
    trace_effects,
)
from locolab.dashboard import common

pytestmark = pytest.mark.slow  # every page rendered (AppTest) over a real sweep, trace and edits

# The app's config hides error details from viewers; tests want them.
config.set_option("client.showErrorDetails", "full")

PAGES = ("views/overview.py", "views/layer_map.py", "views/gallery.py", "views/edits.py", "views/run_edit.py")


@pytest.fixture(scope="session")
def root(tmp_path_factory):
    return real_root(tmp_path_factory)


@pytest.fixture(scope="module")
def planted(root, tmp_path_factory):
    """The real root plus a newer, hand-written run with known answers (``add_planted_run``)."""
    mine = copy_root(root, tmp_path_factory.mktemp("planted") / "root")
    add_planted_run(mine)
    return mine


def open_app(monkeypatch, root, page: str | None = None) -> AppTest:
    monkeypatch.setenv("LOCOLAB_ARTIFACTS", str(root))
    app = AppTest.from_file(str(MAIN), default_timeout=60).run()
    if page:
        app.switch_page(page).run()
    assert not app.exception, app.exception[0].value if app.exception else None
    return app


def heat_map_spec(app: AppTest) -> dict:
    return json.loads(app.get("vega_lite_chart")[0].proto.spec)


def run_settings(app: AppTest) -> dict[str, str]:
    """The run's settings, from the line above the map ('**run** id · **status** finished · ...')."""
    line = next(m.value for m in app.markdown if m.value.startswith("**run**"))
    return dict(re.findall(r"\*\*([^*]+)\*\* (.*?)(?= · \*\*|$)", line))


def compared_table(app: AppTest):
    """The Edits page's table of the compared methods (with the settings that matter)."""
    return next(d.value for d in app.dataframe if "key positions" in d.value.columns)


def grid(app: AppTest) -> str:
    """The Gallery's compact grid (one HTML element)."""
    return next(html.proto.body for html in app.get("html") if "gallery-block" in html.proto.body)


def test_overview_lists_the_runs_with_their_methods_and_the_edits(monkeypatch, root):
    app = open_app(monkeypatch, root)

    assert str(root) in app.markdown[0].value and "$LOCOLAB_ARTIFACTS" in app.markdown[0].value
    runs = app.dataframe[0].value.sort_values("method")
    assert list(runs["method"]) == ["attention-contribution", "locogen", "trace"]
    # Every run id starts with its config name ("dashboard-test"), so the config column is left out to fit 1280 px.
    assert all(run_id.startswith("dashboard-test-") for run_id in runs["run_id"]) and "config" not in runs
    assert list(runs["status"]) == ["finished"] * 3
    # Sweep: 2 families x 2 seeds x (original + target + all-layers + 16 windows of m=1 + 15 of m=2) = 136 cases.
    # Trace: 2 families x 2 seeds x (original + corrupted per traced component, 3 of them, + 16 + 16 + 2 sites).
    # Attention contribution: 2 families x 2 seeds x (original + target + one top-2 intervention).
    assert list(runs["cases"]) == [2 * 2 * 3, 136, 2 * 2 * (3 * 2 + 34)] and list(runs["concepts"]) == [2, 2, 2]
    edits = app.dataframe[1].value
    assert sorted(edits["method"]) == ["all-layers", "diffquickfix", "loco", "neuron"]
    assert list(edits["edited"][edits["method"] == "diffquickfix"]) == ["text_encoder layer 0 out_proj"]


def test_an_empty_root_explains_how_to_produce_results(monkeypatch, tmp_path):
    app = open_app(monkeypatch, tmp_path / "nothing-yet")

    assert "No sweep results" in app.info[0].value
    assert "make demo" in app.code[0].value and "python -m compute sweep" in app.code[0].value
    for page in PAGES[1:4]:
        app.switch_page(page).run()
        assert not app.exception and app.info, page
    app.switch_page("views/run_edit.py").run()
    assert not app.exception and "tiny-sd1" in app.selectbox(key="run_model").options


def test_a_typed_root_replaces_the_started_one(monkeypatch, tmp_path, root):
    sibling = copy_root(root, tmp_path / "sibling")
    app = open_app(monkeypatch, tmp_path / "nothing-yet")

    app.sidebar.text_input(key="root_input").set_value(str(sibling)).run()

    assert "typed in" in app.markdown[0].value and str(sibling) in app.markdown[0].value
    assert set(app.dataframe[0].value["model"]) == {"tiny-sd1"}


def test_a_locked_root_cannot_be_switched_from_the_page(monkeypatch, root):
    monkeypatch.setattr(sys, "argv", ["dashboard/main.py", "--lock-root"])

    app = open_app(monkeypatch, root)

    assert not app.sidebar.text_input
    assert set(app.dataframe[0].value["model"]) == {"tiny-sd1"}


def test_layer_map_has_one_row_per_concept_and_one_column_per_layer(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/layer_map.py")

    spec = heat_map_spec(app)
    assert layer(spec, "cells")["mark"]["type"] == "rect"
    assert [len(row) for row in heat_grid(spec)] == [16, 16] and len(rows_of(spec)) == 2 * 16
    # Two seeds of one prompt are too few units to measure noise: both rows are grey and say so.
    assert row_labels(spec) == ["style · van gogh (not measurable)", "color · blue (not measurable)"]


def test_layer_map_greys_concepts_that_are_not_measurable_and_says_why(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/layer_map.py")

    spec = heat_map_spec(app)
    assert all(z is None for row in heat_grid(spec) for z in row)  # no colour for a ratio of noise
    assert layer(spec, "grey")["mark"]["fill"] == "#d9d9d9" and [
        (row["label"], row["x0"], row["x1"]) for row in rows_of(spec, "grey")] == [
        (label, -0.5, 15.5) for label in row_labels(spec)]
    reason = "not measurable: 2 prompt x seed units, at least 8 are needed to measure noise"
    assert all(reason in hover for hover in tooltips(spec))
    (grey,) = [c.value for c in app.caption if c.value.startswith("Grey rows")]
    assert grey.startswith(f"Grey rows, not measurable: style · van gogh ({reason[16:]}") and (
        f"; color · blue ({reason[16:]}") in grey
    verdicts = app.table[0].value
    assert list(verdicts["concept"]) == ["van gogh", "blue"] and list(verdicts["localizes"]) == ["no", "no"]
    # Each verdict in full in a wrapped list under the table (a table cell cut them).
    (listed,) = [m.value for m in app.markdown if m.value.startswith("- **style · van gogh**: ")]
    lines = listed.splitlines()
    assert [line.split("**")[1] for line in lines] == ["style · van gogh", "color · blue"]
    said = common.escape(f"{reason} (add seeds or prompts)")
    assert all(line.split("**: ", 1)[1].startswith(said) for line in lines)


def test_layer_map_hover_names_block_and_resolution(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/layer_map.py")
    app.selectbox(key="map_size").set_value(2).run()

    hover = tooltips(heat_map_spec(app))
    # Window 8-9 of tiny-sd1, run at 32 px (8x8 latents, halved three times): up block at 2x2, the side at the run's
    # size, not at the model's default 64 px (docs/method.md §1 order).
    assert ("window: layers 8–9\nmodules: 8 (up, 2²) up_blocks.1.attentions.1.transformer_blocks.0.attn2; "
            "9 (up, 2²) up_blocks.1.attentions.2.transformer_blocks.0.attn2\n") in hover[8]
    assert len(hover) == 2 * 15


def test_layer_map_defaults_to_the_newest_finished_run_and_shows_its_settings(monkeypatch, planted):
    app = open_app(monkeypatch, planted, "views/layer_map.py")

    picker = app.selectbox(key="map_run_tiny-sd1")
    assert picker.value == PLANTED and len(picker.options) == 2
    settings = run_settings(app)
    assert (settings["run"], settings["steps"], settings["size"], settings["scheduler"], settings["seeds"]) == (
        PLANTED, "2", "32×32", "PNDMScheduler", "0, 1, 2, 3, 4, 5, 6, 7")
    assert settings["normalized by"] == "target prompt"

    sweep = next(r["run_id"] for r in queries.run_list(Store(planted).connect()).to_pylist() if r["run_id"] != PLANTED)
    picker.set_value(sweep).run()
    settings = run_settings(app)
    assert (settings["run"], settings["seeds"]) == (sweep, "0, 1")


def test_layer_map_marks_windows_whose_interval_clears_the_threshold(monkeypatch, planted):
    app = open_app(monkeypatch, planted, "views/layer_map.py")
    con = Store(planted).connect()
    for size, threshold in ((1, 0.5), (2, 0.5), (2, 0.9)):
        app.selectbox(key="map_size").set_value(size).run()
        app.slider(key="threshold").set_value(threshold).run()

        marked = [[mark == "●" for mark in row] for row in heat_grid(heat_map_spec(app), "mark")]
        stored = {(r["concept"], r["window_start"]): r["localizes"]
                  for r in localization(con, threshold, [PLANTED]).to_pylist() if r["window_size"] == size}
        assert marked == [[stored.get((concept, x), False) for x in range(16)] for concept in ("van gogh", "blue")]
        assert sum(map(sum, marked)) == (size == 2)  # only window 8-9 clears the threshold, at 0.5 and at 0.9
        shown = app.table[0].value
        minimal = {(w["family"], w["concept"]): w["window_size"]
                   for w in minimal_windows(con, threshold, [PLANTED]).to_pylist()}
        assert [None if m == "–" else int(m) for m in shown["m"]] == [
            minimal.get(key) for key in zip(shown["family"], shown["concept"])]
    # Layer 8 alone removes the gap in six of the eight seeds: a point drop of 0.75 the paired test does not carry
    # above 0.5.
    app.selectbox(key="map_size").set_value(1).run()
    app.slider(key="threshold").set_value(0.5).run()
    hover = tooltips(heat_map_spec(app))[8]
    assert "normalized drop: 0.750\ninterval: 95% [" in hover and "not shown to localize" in hover
    assert "adjusted over 31 windows (Holm)" in hover
    assert heat_grid(heat_map_spec(app), "mark")[0][8] == ""


def test_layer_map_offers_every_window_with_its_interval_as_csv(monkeypatch, planted):
    app = open_app(monkeypatch, planted, "views/layer_map.py")

    button = next(b for b in app.get("download_button") if b.key == "map_csv")
    assert button.proto.label.startswith("Download every window (CSV")


def test_the_one_concept_section_is_drawn_when_opened(monkeypatch, planted):
    app = open_app(monkeypatch, planted, "views/layer_map.py")
    # Closed on a first visit: the page draws one chart (the heat map) and no concept controls.
    assert len(app.get("vega_lite_chart")) == 1 and not [s for s in app.selectbox if s.key == "map_concept"]

    app.session_state["one_concept"] = True
    app.run()

    assert len(app.get("vega_lite_chart")) == 2 and app.selectbox(key="map_concept").value == ("style", "van gogh")


def test_the_one_concept_plot_draws_both_references(monkeypatch, planted):
    app = open_app(monkeypatch, planted, "views/layer_map.py")
    app.session_state["one_concept"] = True
    app.run()

    line = json.loads(app.get("vega_lite_chart")[1].proto.spec)
    (rules,) = [part for part in line["layer"] if part["mark"]["type"] == "rule"]
    drawn = rules["data"]["values"]
    assert [r["name"] for r in drawn][:3] == ["original prompt", "target prompt (normalizes)", "all-layers swap"]
    # The last: the threshold, half way to the reference.
    assert [r["level"] for r in drawn] == pytest.approx([0.75, 0.25, 0.25, 0.5])
    labelled = [r["name"] for part in line["layer"] if part["mark"]["type"] == "text" for r in part["data"]["values"]]
    assert sorted(labelled) == sorted(r["name"] for r in drawn)


def test_layer_map_open_gallery_shows_the_chosen_window(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/layer_map.py")
    app.session_state["one_concept"] = True
    app.run()
    app.selectbox(key="map_concept").set_value(("color", "blue")).run()
    app.selectbox(key="map_start").set_value(9).run()

    app.button(key="open_gallery").click().run()

    assert app.title[0].value == "Gallery"
    assert app.selectbox(key="gal_concept").value == ("color", "blue") and app.selectbox(key="gal_focus").value == 9
    # Every window on one screen, window 9 highlighted, and its images at full size below.
    assert re.findall(r'id="gallery-focus"[^>]*><div class="gallery-label"[^>]*>([^<]*)<', grid(app)) == ["layer 9 ◀"]
    assert grid(app).count('data-row="') == 16
    assert "**layer 9** at full size" in [m.value for m in app.markdown]


def traced(root, component: str) -> dict:
    """(family, concept) -> recoveries by site, from the store's own ``trace_effects``."""
    found = {}
    for row in trace_effects(Store(root).connect()).to_pylist():
        if row["component"] == component:
            found.setdefault((row["family"], row["concept"]), {})[row["site"]] = row["recovery"]
    return found


def test_layer_map_tracing_shows_the_stored_recovery_of_every_site(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/layer_map.py")

    app.radio(key="map_method").set_value("Causal tracing").run()
    app.number_input(key="min_gap").set_value(-1.0).run()

    spec = heat_map_spec(app)
    assert row_labels(spec) == ["style · van gogh", "color · blue"]
    expected = traced(root, "cross-attention")
    shown = heat_grid(spec)
    assert [len(row) for row in shown] == [16, 16]
    for row, key in zip(shown, [("style", "van gogh"), ("color", "blue")]):
        assert row == pytest.approx([expected[key][site] for site in range(16)])
    assert "recovery" in app.caption[0].value


def test_layer_map_tracing_offers_each_component_with_its_own_axis(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/layer_map.py")
    app.radio(key="map_method").set_value("Causal tracing").run()

    assert app.selectbox(key="trace_component").options == ["cross-attention", "self-attention", "text-encoder"]
    app.selectbox(key="trace_component").set_value("text-encoder").run()
    app.number_input(key="min_gap").set_value(-1.0).run()

    spec = heat_map_spec(app)
    # tiny-sd1's text encoder has 2 layers.
    assert [len(row) for row in heat_grid(spec)] == [2, 2]
    assert layer(spec, "cells")["encoding"]["x"]["title"] == "text-encoder layer (forward order)"
    expected = traced(root, "text-encoder")[("color", "blue")]
    assert heat_grid(spec)[1] == pytest.approx([expected[0], expected[1]])


def test_layer_map_tracing_blanks_concepts_the_noise_did_not_corrupt(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/layer_map.py")
    app.radio(key="map_method").set_value("Causal tracing").run()
    gaps = {(r["family"], r["concept"]): r["original_score"] - r["corrupted_score"]
            for r in trace_effects(Store(root).connect()).to_pylist() if r["component"] == "cross-attention"}
    between = (min(gaps.values()) + max(gaps.values())) / 2

    app.number_input(key="min_gap").set_value(round(between, 6)).run()

    rows = heat_grid(heat_map_spec(app))
    blank = [all(v is None for v in row) for row in rows]
    assert blank == [gaps[key] < between for key in [("style", "van gogh"), ("color", "blue")]]
    assert sum(blank) == 1
    note = [c.value for c in app.caption if c.value.startswith("Blank rows")]
    assert len(note) == 1 and row_label(*min(gaps, key=gaps.get)) in note[0]


def test_layer_map_tracing_shows_original_corrupted_and_restored_images(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/layer_map.py")
    app.radio(key="map_method").set_value("Causal tracing").run()

    app.selectbox(key="trace_site_cross-attention_style_van gogh").set_value(8).run()

    captions = [image.captions[0].split(" · ")[:2] for image in app.image]
    assert captions == [[kind, f"seed {seed}"] for kind in ("original", "corrupted", "site 8 restored")
                        for seed in (0, 1)]


def test_layer_map_side_by_side_puts_both_methods_on_the_same_rows_and_scale(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/layer_map.py")

    app.radio(key="map_method").set_value("Side by side").run()
    app.number_input(key="min_gap").set_value(-1.0).run()

    locogen, tracing = (json.loads(chart.proto.spec) for chart in app.get("vega_lite_chart"))
    assert app.selectbox(key="map_size").value == 1
    assert locogen["title"]["text"].startswith("LocoGen normalized drop · window size m = 1")
    assert tracing["title"]["text"].startswith("Causal tracing recovery · cross-attention")
    # One label per row on both maps (their columns line up), saying what either method cannot speak to.
    assert row_labels(locogen) == row_labels(tracing) == [
        "style · van gogh (LocoGen: not measurable)", "color · blue (LocoGen: not measurable)"]
    for heat in (locogen, tracing):
        assert len(heat_grid(heat)[0]) == 16
    colours = [layer(heat, "cells")["encoding"]["color"]["scale"] for heat in (locogen, tracing)]
    assert colours[0] == colours[1] and colours[0]["domain"] == [0, 1]
    captions = [caption.value for caption in app.caption]
    assert any(c.startswith("**LocoGen** colour: normalized drop") for c in captions)
    assert any(c.startswith("**Causal tracing** colour: recovery") for c in captions)
    counts = app.dataframe[0].value
    expected = traced(root, "cross-attention")[("style", "van gogh")].values()
    assert counts.iloc[0, 2] == sum(r is not None and r >= 0.5 for r in expected)


def test_layer_map_attention_contribution_shows_the_stored_map_and_interventions(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/layer_map.py")
    app.radio(key="map_method").set_value("Attention contribution").run()

    spec = heat_map_spec(app)
    assert row_labels(spec) == ["style · van gogh", "color · blue"]
    con = Store(root).connect()
    stored = {}
    for row in contribution_map(con).to_pylist():
        stored.setdefault((row["family"], row["concept"]), {})[row["site"]] = row
    for z, marks, key in zip(heat_grid(spec), heat_grid(spec, "mark"), [("style", "van gogh"), ("color", "blue")]):
        sites = stored[key]
        top = max(site["contribution"] for site in sites.values())
        assert z == pytest.approx([sites[i]["contribution"] / top for i in range(16)])
        assert [i for i, mark in enumerate(marks) if mark == "●"] == sorted(
            i for i, site in sites.items() if site["site_rank"] <= 2)
    interventions = app.dataframe[0].value
    expected = {row_label(r["family"], r["concept"]): r for r in top_k_interventions(con).to_pylist()}
    for _, row in interventions.iterrows():
        assert list(row["sites fed the target"]) == expected[row["concept"]]["blocks"]
        assert row["drop"] == pytest.approx(expected[row["concept"]]["normalized_drop"])
    assert app.caption[0].value.startswith("**Attention contribution** colour")


def test_layer_map_side_by_side_puts_contribution_under_locogen_on_the_same_axis(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/layer_map.py")
    app.radio(key="map_method").set_value("Side by side").run()
    app.selectbox(key="map_beside").set_value("Attention contribution").run()

    locogen, contribution = (json.loads(chart.proto.spec) for chart in app.get("vega_lite_chart"))
    assert contribution["title"]["text"].startswith("Attention contribution")
    assert row_labels(locogen) == row_labels(contribution)
    assert len(heat_grid(locogen)[0]) == len(heat_grid(contribution)[0]) == 16
    assert list(app.dataframe[0].value.columns) == ["concept", "LocoGen strongest window", "top-2 sites",
                                                    "top-2 drop"]


def test_gallery_shows_every_window_with_one_thumbnail_per_seed(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/gallery.py")

    # Original and target rows plus all 16 windows of m = 1, each with seeds 0 and 1, in one grid.
    assert grid(app).count("<img") == (2 + 16) * 2
    assert re.findall(r'data-row="(\d+)"', grid(app)) == [str(i) for i in range(16)]
    assert re.findall(r'alt="(seed \d)', grid(app))[:4] == ["seed 0", "seed 1"] * 2
    # The focused window (the first by default) at full size below.
    assert [image.captions[0].split(" · ")[0] for image in app.image] == ["seed 0", "seed 1"]
    app.selectbox(key="gal_size").set_value(2).run()
    assert re.findall(r'data-row="(\d+)"', grid(app)) == [str(i) for i in range(15)]
    assert app.query_params["m"] == "2"


def test_gallery_shows_every_restored_site_of_a_trace(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/gallery.py")

    app.radio(key="gal_images").set_value("Causal tracing").run()

    assert app.selectbox(key="gal_trace").value == "cross-attention · noise 3"
    rows = re.findall(r'class="gallery-label"[^>]*>([^<]*)</div>', grid(app))
    assert rows == ["original", "corrupted", "site 0 restored ◀", *(f"site {i} restored" for i in range(1, 16))]
    expected = traced(root, "cross-attention")[("style", "van gogh")]
    assert f"recovery {expected[0]:.3f}" in grid(app)
    assert grid(app).count("<img") == 18 * 2 and app.query_params["images"] == "trace"


def test_edits_page_shows_settings_pairs_and_methods(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/edits.py")
    loco = next(edit_id for edit_id in app.dataframe[0].value["edit"] if "-loco-" in edit_id)

    app.selectbox(key="edit_choice").set_value(loco).run()

    settings = dict(zip(app.dataframe[2].value["setting"], app.dataframe[2].value["value"]))
    assert (settings["layers"], settings["lambda"], settings["method"]) == ("layers 8–9", "0.01", "loco")
    (summary,) = (root / "edits" / loco / "evals").glob("*/eval.json")
    stored = json.loads(summary.read_text())
    # Each row of cards is headed by its group, so the labels are short (they were cut at 1280 px: "generaliza…"
    # twice) and carry the interval; values are two decimals.
    assert [m.value for m in app.markdown if m.value.startswith("**") and ":" in m.value][:3] == [
        "**Efficacy: the edit's own prompts**", "**Generalization: held-out prompts**",
        "**Specificity: after / before, 1 = kept**"]
    assert [m.label.split(" [")[0] for m in app.metric] == ["score drop", "prompt rate", "image rate"] * 2 + [
        "unrelated", "other concepts"]
    assert all(len(m.label) <= 28 and len(m.value) <= 6 for m in app.metric)
    assert app.metric[0].label == ("score drop [" f"{stored['efficacy_score_drop_low']:.2f}, "
                                   f"{stored['efficacy_score_drop_high']:.2f}]")
    assert app.metric[0].value == f"{stored['efficacy_score_drop']:.2f}"
    metrics = app.dataframe[1].value.set_index("metric")
    assert metrics.loc["efficacy · prompt rate", "interval"] == (
        f"[{stored['efficacy_prompt_rate_low']:.2f}, {stored['efficacy_prompt_rate_high']:.2f}]")
    assert metrics.loc["efficacy · image rate", "of"] == 4  # 4 efficacy prompts x 1 seed
    assert [t.label for t in app.tabs] == ["efficacy (the edit's own prompts)", "generalization (held-out prompts)",
                                          "robustness (paraphrases, misspellings, indirect references)",
                                          "specificity (unrelated prompts)",
                                          "specificity (the family's other concepts)", "target reference"]
    # First tab: the 4 efficacy prompts x seed 0, each a before/after pair in one compact grid, and the group's rows
    # of the evaluation battery beside it.
    (pairs,) = [html.proto.body for html in app.tabs[0].get("html")]
    assert re.findall(r'alt="(before|after) ', pairs) == ["before", "after"] * 4
    assert pairs.count('class="gallery-block"') == 4 and "image-rendering:pixelated" in pairs
    assert set(app.tabs[0].dataframe[0].value["group"]) == {"efficacy"}


def test_edits_page_shows_the_evaluation_battery(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/edits.py")

    assert any(s.value.startswith("Evaluation battery of ") for s in app.subheader)
    # Each prompt group's rows beside its pairs, and the whole table with the battery.
    *groups, table = [d.value for d in app.dataframe if "attribute" in d.value.columns]
    for rows in groups:
        (group,) = set(rows["group"])
        assert len(rows) == (table["group"] == group).sum()
    assert set(table["group"]) >= {"concept", "efficacy", "generalization", "robustness", "target"}
    assert set(table["attribute"]) == {"style"}  # CLIP zero-shot over the family: the only detector without weights
    verdicts = [e.value for e in [*app.info, *app.success, *app.error] if "on its prompts" in e.value]
    assert len(verdicts) == 1 and "'van gogh'" in verdicts[0]


@pytest.mark.heavy  # a real evaluation with the recovery attack
def test_an_attacked_evaluation_shows_the_attacks_verdict_table_and_images(monkeypatch, tmp_path, root):
    attacked = copy_root(root, tmp_path / "root")
    edit_id = add_attacked_evaluation(attacked)
    app = open_app(monkeypatch, attacked, "views/edits.py")

    app.selectbox(key="edit_choice").set_value(edit_id).run()

    (summary,) = [json.loads(p.read_text()) for p in (attacked / "edits" / edit_id / "evals").glob("*/eval.json")
                  if json.loads(p.read_text())["attack"]]
    assert app.selectbox(key=f"eval_choice_{edit_id}").value == summary["eval_id"]  # the newest first
    assert any("recovery attack of 2 steps and 2 soft token(s)" in c.value for c in app.caption)  # "van gogh": 2
    verdicts = [e.value for e in [*app.info, *app.success, *app.error] if e.value.startswith("Recovery attack (2 ")]
    assert len(verdicts) == 1
    (table,) = [d.value for d in app.dataframe if "under attack" in d.value.columns]
    row = summary["battery"]["attack"]["rows"][0]
    assert list(table["attribute"]) == ["style"] and table["images"][0] == row["units"]
    assert table["under attack"][0] == f"{row['attacked']:.2f} [{row['attacked_low']:.2f}, {row['attacked_high']:.2f}]"
    assert "recovery attack (the concept's prompts with learned soft tokens, after the edit)" in [
        t.label for t in app.tabs]


def test_edits_page_opens_the_edit_a_link_names(monkeypatch, root):
    quickfix = next(path.name for path in (root / "edits").iterdir() if "-diffquickfix-" in path.name)
    monkeypatch.setenv("LOCOLAB_ARTIFACTS", str(root))
    app = AppTest.from_file(str(MAIN), default_timeout=60).run()
    app.query_params["edit"] = quickfix

    app.switch_page("views/edits.py").run()

    assert app.selectbox(key="edit_choice").value == quickfix
    loco = next(path.name for path in (root / "edits").iterdir() if "-loco-" in path.name)
    app.selectbox(key="edit_choice").set_value(loco).run()
    assert app.query_params["edit"] == loco


def test_a_link_naming_what_the_root_lacks_says_so_and_shows_another(monkeypatch, root):
    monkeypatch.setenv("LOCOLAB_ARTIFACTS", str(root))
    for page, name, what, key in (("views/edits.py", "edit", "edit", "edit_choice"),
                                  ("views/layer_map.py", "run", "run", None),
                                  ("views/gallery.py", "concept", "concept", "gal_concept")):
        app = AppTest.from_file(str(MAIN), default_timeout=60).run()
        app.query_params.update({name: "gone", "family": "style"})

        app.switch_page(page).run()

        assert not app.exception
        assert [w.value for w in app.warning if w.value.startswith("This link")] == [
            f"This link names the {what} “gone”, which this artifact root does not have: showing another instead."]
        if key:
            assert app.selectbox(key=key).value not in ("gone", ("style", "gone"))


def test_edits_page_compares_all_four_methods_including_diffquickfix(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/edits.py")
    quickfix = next(edit_id for edit_id in app.dataframe[0].value["edit"] if "-diffquickfix-" in edit_id)

    app.selectbox(key="edit_choice").set_value(quickfix).run()

    settings = dict(zip(app.dataframe[2].value["setting"], app.dataframe[2].value["value"]))
    assert "layers" not in settings and settings["positions"] == "subject+padding"
    assert settings["modules"] == "['text_encoder.encoder.layers.0.self_attn.out_proj']"
    compared = compared_table(app)
    assert list(compared["method"]) == ["loco", "all-layers", "neuron", "diffquickfix"]
    (summary,) = (root / "edits" / quickfix / "evals").glob("*/eval.json")
    stored = json.loads(summary.read_text())
    row = compared[compared["edit"] == quickfix].iloc[0]
    assert row["efficacy_score_drop"] == pytest.approx(stored["efficacy_score_drop"])
    assert row["generalization_score_drop"] == pytest.approx(stored["generalization_score_drop"])
    means = next(d.value for d in app.dataframe if "delta" in d.value.columns and "method" in d.value.columns)
    assert sorted(set(means["method"])) == ["all-layers", "diffquickfix", "loco", "neuron"]


def test_methods_compared_show_the_settings_that_matter_warn_when_they_differ_and_show_the_images(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/edits.py")

    compared = compared_table(app).set_index("method")
    assert list(compared.columns[:6]) == ["target", "key positions", "preserve others", "λ / top-k", "seeds",
                                           "preservation set"]
    assert set(compared["target"]) == {"a painting"} and set(compared["seeds"]) == {"0"}
    assert set(compared["preservation set"]) == {"2 unrelated prompts"}
    assert (compared.loc["loco", "key positions"], compared.loc["diffquickfix", "key positions"]) == (
        "subject", "subject+padding")
    assert (compared.loc["loco", "λ / top-k"], compared.loc["neuron", "λ / top-k"]) == ("λ 0.01", "top-k 50")
    (warning,) = [w.value for w in app.warning if "differ in" in w.value]
    assert "key positions" in warning and "λ / top-k" in warning and "target" not in warning.split(":")[0]
    # The same prompt and seed, the unedited image once and each method's edited image beside it: prompts every
    # compared edit was evaluated on (each method keys its own efficacy prompts).
    assert app.selectbox(key="compare_images_group").value == "efficacy"
    headers = [m.value for m in app.markdown if m.value.startswith(("**before", "**after"))]
    assert headers == ["**before (unedited)**"] + [f"**after\\: {method}**" for method in (
        "loco", "all-layers", "neuron", "diffquickfix")]
    side = [img for img in app.image if img.captions[0].startswith("score ")]
    assert len(side) == 5


def test_edits_and_figures_offer_their_downloads(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/edits.py")

    buttons = [b.proto.label for b in app.get("download_button")]
    assert "Download edit (zip: record, weights, evaluation images and scores)" in buttons
    # vl-convert draws SVG, PNG and PDF on any host (no browser), and the HTML opens offline.
    assert {"SVG", "PNG", "PDF", "HTML"} <= set(buttons)
    assert [p.proto.popover.label for p in app.get("popover")] == ["Download figure"]
    # The file's title names what it shows.
    (methods,) = [p.proto.popover.help for p in app.get("popover")]
    assert methods.startswith("Titled: Methods compared\\: mean score change per prompt group · model tiny-sd1 · "
                              "concept style · van gogh · scorer tiny-clip · seed 0 · evaluation ")
    assert "Download table (CSV)" in buttons


def test_run_an_edit_prefills_the_localized_layers(monkeypatch, planted):
    app = open_app(monkeypatch, planted, "views/run_edit.py")
    app.selectbox(key="run_model").set_value("tiny-sd1").run()

    # The model's newest finished run (the planted one) localizes van gogh to layers 8-9.
    layers = app.multiselect(key="run_layers_tiny-sd1_style_van gogh").value
    assert layers == [8, 9]
    # The edit's target is the family's (what `compute edit` uses), not the sweep's target prompt, which the help
    # names.
    target = app.text_input(key="run_target_tiny-sd1_style_van gogh")
    assert target.value == "a painting" and "'a thing'" in target.help


def test_run_an_edit_leaves_the_layers_empty_when_nothing_localizes(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/run_edit.py")
    app.selectbox(key="run_model").set_value("tiny-sd1").run()

    assert app.multiselect(key="run_layers_tiny-sd1_style_van gogh").value == []
    assert app.text_input(key="run_target_tiny-sd1_style_van gogh").value == "a painting"


def test_run_an_edit_suggests_the_toy_worlds_key_options_and_bounds_its_unrelated_prompts(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/run_edit.py")
    app.selectbox(key="run_model").set_value("toyworld").run()
    app.text_input(key="run_concept_text_style").set_value("stripes").run()

    assert app.text_input(key="run_target_toyworld_style_stripes").value == "an object on plain"
    # The README's options for the toy world are pre-set, and a caption says why and that they are not the paper's.
    assert app.radio(key="run_positions_toyworld").value == "subject+padding"
    assert app.checkbox(key="run_preserve_toyworld").value
    assert any(c.value.startswith("Suggested for toyworld (pre-set, not the paper's setting)") for c in app.caption)
    # 20 unrelated prompts would silently become 12: the box stops at the 12 the preservation set holds, and says so.
    unrelated = app.number_input(key="run_unrelated_toyworld_stripes")
    assert (unrelated.value, unrelated.max) == (12, 12)
    assert any("has 12 prompts without" in c.value for c in app.caption)


def test_run_an_edit_offers_only_registered_or_stored_models(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/run_edit.py")

    from locolab.contract.catalog.registry import MODELS
    assert app.selectbox(key="run_model").options == sorted(MODELS)


def test_run_an_edit_offers_diffquickfix_without_unet_layers_and_its_key_options(monkeypatch, root):
    app = open_app(monkeypatch, root, "views/run_edit.py")
    app.selectbox(key="run_model").set_value("tiny-sd1").run()

    app.radio(key="run_method").set_value("diffquickfix").run()

    assert app.multiselect(key="run_layers_tiny-sd1_style_van gogh").disabled
    assert app.radio(key="run_positions_tiny-sd1").options == ["method default", "subject", "subject+padding"]
    assert app.radio(key="run_positions_tiny-sd1").value == "method default"
    assert not app.checkbox(key="run_preserve_tiny-sd1").value
    app.radio(key="run_method").set_value("neuron").run()
    assert not app.get("radio")[1:] and not app.checkbox


DAMAGE = {  # how a root is damaged: (what does it, what the warning names)
    "corrupt": (add_corrupt_part, "unreadable Parquet"),
    "scrambled pages": (add_scrambled_part, "unreadable Parquet"),
    "foreign": (add_foreign_part, "not a LocoLab scores table"),
    "cut-off summary": (add_damaged_summary, "unreadable JSON"),
}


@pytest.fixture(scope="module", params=sorted(DAMAGE))
def damaged(request, tmp_path_factory, root):
    """A copy of the real root with one kind of damage: (root, the damaged file, what the warning says of it)."""
    copy = copy_root(root, tmp_path_factory.mktemp("damaged") / "root")
    damage, reason = DAMAGE[request.param]
    return copy, damage(copy), reason


@pytest.mark.parametrize("page", PAGES)
def test_damaged_files_are_named_and_skipped_on_every_page(monkeypatch, damaged, page):
    broken, path, reason = damaged

    app = open_app(monkeypatch, broken, page)

    assert path.name in app.warning[0].value and reason in app.warning[0].value
    assert not app.error


def test_a_newer_schema_is_reported_not_read(monkeypatch, tmp_path, root):
    newer = copy_root(root, tmp_path / "root")
    add_newer_part(newer)

    app = open_app(monkeypatch, newer)

    assert "newer LocoLab (schema v99 \\> v3)" in app.error[0].value
    assert not app.dataframe


def test_a_foreign_parquet_file_with_wrong_column_types_is_named_and_skipped(monkeypatch, tmp_path, root):
    odd = copy_root(root, tmp_path / "root")
    add_foreign_part(odd)

    app = open_app(monkeypatch, odd, "views/gallery.py")

    assert "part-foreign.parquet`: not a LocoLab scores table\\: score is text, not number" in app.warning[0].value
    assert grid(app).count("<img") == (2 + 16) * 2 and len(app.image) == 2


def test_unreadable_images_become_notes(monkeypatch, tmp_path, root):
    odd = copy_root(root, tmp_path / "root")
    for image in (odd / "images").rglob("*.png"):
        image.write_bytes(b"not a png")

    app = open_app(monkeypatch, odd, "views/gallery.py")

    assert not app.image and "<img" not in grid(app)
    assert grid(app).count("image missing or unreadable") == (2 + 16) * 2
    notes = [c.value for c in app.caption if c.value.startswith("seed ")]  # the focused window at full size
    assert len(notes) == 2 and all(n.endswith("(image missing or unreadable)") for n in notes)


def test_image_paths_that_leave_the_root_are_not_read(monkeypatch, tmp_path, root):
    odd = copy_root(root, tmp_path / "root")
    (tmp_path / "secret.png").write_bytes((odd / "images" / "tiny-sd1").iterdir().__next__().read_bytes())
    case = dict(run_id="odd", model="tiny-sd1", family="style", concept="escape", prompt="p", target="t", seed=0)
    write_table("cases", [dict(case, case_id="o", kind="original", image_path="../secret.png"),
                          dict(case, case_id="w", kind="window", window_start=0, window_size=1,
                               image_path="images/../../secret.png")], "odd", root=odd)

    app = open_app(monkeypatch, odd, "views/gallery.py")
    app.selectbox(key="gal_concept").set_value(("style", "escape")).run()

    assert not app.image and "<img" not in grid(app)
    assert grid(app).count("no image: path leaves the artifact root") == 2  # the original and the window
    assert [c.value for c in app.caption if "leaves" in c.value] == [
        "seed 0 · –\n\n(no image: path leaves the artifact root)"]


def test_each_evaluation_shows_its_settings_and_methods_compare_under_the_same_settings(monkeypatch, tmp_path, root):
    two = copy_root(root, tmp_path / "root")
    edit_id, second = add_second_evaluation(two, steps=7)
    app = open_app(monkeypatch, two, "views/edits.py")

    app.selectbox(key="edit_choice").set_value(edit_id).run()

    picker = app.selectbox(key=f"eval_choice_{edit_id}")
    assert len(picker.options) == 2 and picker.value == second  # the newest first
    settings = [c.value for c in app.caption if c.value.startswith(f"evaluation {second}")]
    assert len(settings) == 1 and "7 steps" in settings[0] and "2 unrelated prompts" in settings[0]
    assert app.metric[0].label.startswith("score drop") and app.metric[0].value == "0.25"
    assert any(c.value.startswith("Only one edit of this concept evaluated with these settings") for c in app.caption)
    first = next(option for option in picker.options if not option.startswith(second))
    picker.set_value(first.split(" · ")[0]).run()
    assert any(c.value.startswith(f"evaluation {first.split(' · ')[0]}") and "2 steps" in c.value
               for c in app.caption)
    assert list(compared_table(app)["method"]) == ["loco", "all-layers", "neuron", "diffquickfix"]


def test_stored_text_is_shown_literally(monkeypatch, tmp_path, root):
    odd = copy_root(root, tmp_path / "root")
    crafted = "[click](http://evil.example) **bold** :red[x] <b>html</b>"
    case = dict(run_id="odd", model="tiny-sd1", family="style", concept="crafted", prompt=crafted, target="t",
                seed=0, kind="original", case_id="c", image_path="images/none.png")
    write_table("cases", [case, dict(case, case_id="w", kind="window", window_start=0, window_size=1)], "odd",
                root=odd)
    app = open_app(monkeypatch, odd, "views/gallery.py")

    app.selectbox(key="gal_concept").set_value(("style", "crafted")).run()

    caption = next(c.value for c in app.caption if c.value.startswith("Original prompt"))
    assert "\\[click\\](http\\://evil.example) \\*\\*bold\\*\\* \\:red\\[x\\] \\<b\\>html\\</b\\>" in caption


def test_a_stored_group_name_is_a_literal_tab_label(monkeypatch, tmp_path, root):
    odd = copy_root(root, tmp_path / "root")
    (part,) = (odd / "tables" / "edit_scores").glob("part-*-loco-*.parquet")
    scores = pq.read_table(part)
    crafted = "[click](http://evil.example) **bold**"
    groups = [crafted if group == "target" else group for group in scores["group"].to_pylist()]
    pq.write_table(scores.set_column(scores.schema.get_field_index("group"), "group", pa.array(groups)), part)
    app = open_app(monkeypatch, odd, "views/edits.py")

    app.selectbox(key="edit_choice").set_value(part.name.split("-", 1)[1].rsplit("-", 1)[0]).run()

    assert [t.label for t in app.tabs][-1] == "\\[click\\](http\\://evil.example) \\*\\*bold\\*\\*"


def test_a_root_typed_outside_the_allowed_places_is_refused(monkeypatch, tmp_path, root):
    app = open_app(monkeypatch, tmp_path / "launch")

    for typed in ("/", "/etc", str(root)):
        app.sidebar.text_input(key="root_input").set_value(typed).run()

        assert "is outside the folders this dashboard may open" in app.sidebar.error[0].value
        assert str(tmp_path / "launch") in app.markdown[0].value and "typed in" not in app.markdown[0].value
    app.sidebar.text_input(key="root_input").set_value(str(tmp_path / "not-there")).run()
    assert "is not an existing folder" in app.sidebar.error[0].value


def test_jobs_launch_only_into_the_launch_root_or_an_existing_locolab_root(monkeypatch, tmp_path):
    (tmp_path / "plain").mkdir()
    app = open_app(monkeypatch, tmp_path / "launch", "views/run_edit.py")
    assert not app.button(key="launch").disabled

    app.sidebar.text_input(key="root_input").set_value(str(tmp_path / "plain")).run()

    assert "is not a LocoLab artifact root" in app.warning[0].value
    assert app.button(key="launch").disabled


def test_crafted_stored_values_do_not_widen_pickers_or_name_outside_models(monkeypatch, tmp_path, root):
    odd = copy_root(root, tmp_path / "root")
    inside, outside = odd / "models" / "mine", tmp_path / "elsewhere"
    for folder in (inside, outside):
        folder.mkdir(parents=True)
        (folder / "model_index.json").write_text("{}")
    rows = [dict(case_id=f"c{i}", run_id="crafted", model=name, family="style", concept="x", kind="original",
                 seed=0, scorer_id="tiny-clip", score=0.1) for i, name in enumerate(
                     [str(inside), str(outside), "someone/hub-model", "../../escape"])]
    write_table("scores", rows, "crafted", root=odd)
    write_table("layers", [dict(run_id="crafted", model="tiny-sd1", index=2_000_000, component="cross-attention")],
                "crafted", root=odd)
    write_table("scores", [dict(case_id="t", run_id="crafted", model="tiny-sd1", family="style", concept="van gogh",
                                kind="restored", site=2_000_000, seed=0, scorer_id="tiny-clip",
                                score=0.3, method="trace-unet", component="cross-attention", noise=3.0)],
                "crafted-trace", root=odd)

    app = open_app(monkeypatch, odd, "views/run_edit.py")
    from locolab.contract.catalog.registry import MODELS
    assert app.selectbox(key="run_model").options == sorted([*MODELS, str(inside)])

    app = open_app(monkeypatch, odd, "views/layer_map.py")
    assert [len(row) for row in heat_grid(heat_map_spec(app))] == [16, 16]
    app.radio(key="map_method").set_value("Causal tracing").run()
    assert len(app.selectbox(key="trace_site_cross-attention_style_van gogh").options) == 16


def test_a_root_on_an_object_store_shows_the_same_pages_read_only(monkeypatch, root):
    from test_dashboard_exports import to_memory

    remote = to_memory(str(root))
    here, there = open_app(monkeypatch, root), open_app(monkeypatch, remote)

    assert remote in there.markdown[0].value
    assert there.dataframe[0].value.equals(here.dataframe[0].value)  # the runs, summarized over the object store
    for app in (here, there):
        app.switch_page("views/gallery.py").run()
    assert not there.exception
    # The compact grid's thumbnails, read over the object store, are the local ones, and so are the full-size images.
    assert grid(there).count("<img") == (2 + 16) * 2 and grid(there) == grid(here)
    assert len(there.image) == len(here.image) == 2
    assert [i.captions[0] for i in there.image] == [i.captions[0] for i in here.image]
    # Each image is the same file: Streamlit names media by a digest of their bytes.
    assert [i.proto.imgs[0].url for i in there.image] == [i.proto.imgs[0].url for i in here.image]
    there.switch_page("views/run_edit.py").run()
    assert not there.exception
    assert any("served read-only\\: jobs are disabled" in w.value and "--allow-writes" in w.value
               for w in there.warning)
    assert there.button(key="launch").disabled


def test_benchmark_page_shows_each_methods_hit_rate_against_the_plan(monkeypatch, tmp_path):
    from datetime import UTC, datetime

    from locolab.contract.planted import hit_rates
    from locolab.contract.store import write_table

    app = open_app(monkeypatch, tmp_path / "nothing-yet", "views/benchmark.py")
    assert "No benchmark" in app.info[0].value and "benchmark-localization" in app.code[0].value
    named = [{"model": "toyworld-planted-a", "method": method, "family": "style", "concept": concept,
              "layers": layers} for method, concept, layers in
             [("locogen", "stripes", [12]), ("locogen", "dots", [12]), ("trace", "stripes", [11]),
              ("trace", "dots", [12])]]
    table = hit_rates(named, {"toyworld-planted-a": {"style": [12]}})
    rows = [{**r, "benchmark_id": "bench-1", "seeds": [0, 1], "created_at": datetime.now(UTC)}
            for r in table.to_pylist()]
    write_table("localization_benchmark", rows, "bench-1", tmp_path / "root")

    app = open_app(monkeypatch, tmp_path / "root", "views/benchmark.py")

    shown = app.dataframe[0].value
    assert list(shown["method"]) == ["locogen", "trace"]
    assert list(shown["exact hits [interval]"]) == ["2/2 [0.34, 1.00]", "1/2 [0.09, 0.91]"]
    assert list(shown["named per concept"]) == ["stripes: 12; dots: 12", "stripes: 11; dots: 12"]
    assert "seeds 0, 1" in app.caption[0].value
