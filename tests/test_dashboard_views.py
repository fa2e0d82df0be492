"""The Layer map's and Gallery's figures and views on a hand-written run with known answers (``add_planted_run``):
boxes drawn for the map's own m, values beyond the colour scale marked, module paths in the hover, the one-concept
window selector starting on the minimal window, the compact gallery, one timestamp format, and the view in the URL
(a link reproduces it, an older URL restores the older view)."""

import io
import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from dashboard_fixtures import MAIN, PLANTED, PLANTED_SCORER, add_planted_run, boxes, cell_grid, layer
from PIL import Image
from streamlit import config
from streamlit.testing.v1 import AppTest

from locolab.contract import queries
from locolab.contract.figures import heat_map
from locolab.contract.store import Store, write_table
from locolab.dashboard import common
from locolab.dashboard.gallery_grid import FOCUS_ID, Cell, Row, enlarged, grid_html, thumb_side, thumbnail

config.set_option("client.showErrorDetails", "full")
LAYERS = {i: {"path": f"unet.block{i}.attn2", "block": "down" if i < 6 else "up", "resolution": 4} for i in range(16)}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A root holding only the planted run (no trace, no edits): van gogh localizes to window 8-9 (m = 2) and to
    nothing of m = 1; blue is not measurable."""
    root = tmp_path_factory.mktemp("planted-only")
    add_planted_run(root)
    write_table("layers", [dict(run_id=PLANTED, model="tiny-sd1", index=i, component="cross-attention", **info)
                           for i, info in LAYERS.items()], PLANTED, root=root)
    return root


@pytest.fixture(scope="module")
def loc(planted):
    return queries.localization_table(Store(planted).connect(), PLANTED, 0.95)


def test_the_map_boxes_only_minimal_windows_of_its_own_m(loc):
    minimal = queries.minimal_windows(loc, PLANTED_SCORER, 0.5)
    assert [(w["concept"], w["window_start"], w["window_size"]) for w in minimal.to_pylist()] == [("van gogh", 8, 2)]

    for size, drawn in ((1, []), (2, [(7.5, 9.5, "style · van gogh")])):
        cells = queries.layer_cells(loc, PLANTED_SCORER, size, 0.5)
        assert boxes(heat_map(cells, minimal, LAYERS, 16, size, 0.5)) == drawn
    # A minimal window of m = 1 is not drawn on the map of m = 2 (its box would cover cells that mean 12-13).
    one = pa.table({"family": ["style"], "concept": ["van gogh"], "window_start": [12], "window_size": [1]})
    assert boxes(heat_map(queries.layer_cells(loc, PLANTED_SCORER, 2, 0.5), one, LAYERS, 16, 2, 0.5)) == []


def test_values_beyond_the_colour_scale_are_marked_and_the_scale_is_named(loc):
    cells = queries.layer_cells(loc, PLANTED_SCORER, 2, 0.5)
    starts, concepts = cells["window_start"].to_pylist(), cells["concept"].to_pylist()
    # Window 3 above the scale; 4 below it with its interval; 5 a hair below 0 with an interval reaching above 0.
    changed = {3: (1.15, 1.2), 4: (-0.2, -0.1), 5: (-0.05, 0.02)}
    for column, index in (("normalized_drop", 0), ("drop_high", 1)):
        values = [changed[s][index] if c == "van gogh" and s in changed else v
                  for c, s, v in zip(concepts, starts, cells[column].to_pylist())]
        cells = cells.set_column(cells.column_names.index(column), column, pa.array(values))

    figure = heat_map(cells, queries.minimal_windows(loc, PLANTED_SCORER, 0.5), LAYERS, 16, 2, 0.5,
                      about="tiny-sd1 · run x")
    colour = layer(figure, "cells")["encoding"]["color"]
    assert colour["scale"]["domain"] == [0, 1] and colour["scale"]["clamp"] and cell_grid(figure)[0, 3] == 1.15
    marks = cell_grid(figure, "mark")
    assert (marks[0, 3], marks[0, 4], marks[0, 5], marks[0, 8]) == ("▲", "▼", "", "●")
    assert sum(mark.count("▲") + mark.count("▼") for mark in marks.values()) == 2
    # The marks layer draws exactly the non-empty marks, at their cells.
    assert {(m["row"], m["column"]): m["mark"] for m in layer(figure, "marks")["data"]["values"]} == {
        key: mark for key, mark in marks.items() if mark}
    assert "scale 0–1" in colour["legend"]["title"][1] and "▲ > 1" in colour["legend"]["title"][2]
    assert figure["title"]["subtitle"][0] == "tiny-sd1 · run x" and "▲ above 1, ▼ below 0" in figure["title"][
        "subtitle"][1]


def test_the_tooltip_names_each_module_with_its_block_and_resolution(loc):
    cells = queries.layer_cells(loc, PLANTED_SCORER, 2, 0.5)

    figure = heat_map(cells, queries.minimal_windows(loc, PLANTED_SCORER, 0.5), LAYERS, 16, 2, 0.5)

    assert (cell_grid(figure, "window")[0, 5], cell_grid(figure, "modules")[0, 5]) == (
        "layers 5–6", "5 (down, 4²) unet.block5.attn2; 6 (up, 4²) unet.block6.attn2")
    assert [t["field"] for t in layer(figure, "cells")["encoding"]["tooltip"]] == [
        "concept", "window", "modules", "normalized drop", "interval", "verdict", "score", "references"]


def test_thumbnails_enlarge_small_images_with_whole_pixels_and_shrink_large_ones(tmp_path):
    small = Image.new("RGB", (32, 32))
    small.putpixel((0, 0), (255, 0, 0))
    small.putpixel((1, 0), (0, 0, 255))
    small.save(tmp_path / "small.png")
    Image.new("RGB", (512, 256), (0, 128, 0)).save(tmp_path / "large.png")

    big = Image.open(io.BytesIO(thumbnail(tmp_path / "small.png")))
    assert big.size == (96, 96)
    assert {big.getpixel((x, y)) for x in range(3) for y in range(3)} == {(255, 0, 0)}  # one pixel, 3 x 3
    assert {big.getpixel((x, y)) for x in range(3, 6) for y in range(3)} == {(0, 0, 255)}
    assert Image.open(io.BytesIO(thumbnail(tmp_path / "large.png"))).size == (96, 48)


def test_images_shown_at_a_columns_width_are_enlarged_with_whole_pixels_first():
    small = Image.new("RGB", (32, 16))
    small.putpixel((0, 0), (255, 0, 0))
    encoded = io.BytesIO()
    small.save(encoded, format="PNG")
    large = io.BytesIO()
    Image.new("RGB", (600, 300)).save(large, format="PNG")

    big = Image.open(io.BytesIO(enlarged(encoded.getvalue())))

    assert big.size == (512, 256)  # 16 x: the smallest whole factor reaching 512
    assert {big.getpixel((x, y)) for x in range(16) for y in range(16)} == {(255, 0, 0)}
    assert big.getpixel((16, 0)) == (0, 0, 0)
    assert enlarged(large.getvalue()) == large.getvalue()  # large enough: left as it is


def test_dense_grids_get_smaller_thumbnails():
    assert [thumb_side(n) for n in (34, 48, 49, 68)] == [96, 96, 64, 64]


def test_the_grid_highlights_the_focused_row_and_escapes_text():
    wide = io.BytesIO()
    Image.new("RGB", (64, 32)).save(wide, format="PNG")
    rows = [Row("layer 0", [Cell(wide.getvalue(), "seed 0 · 0.2"), None], "drop 0.100"),
            Row("<b>layer 1</b>", [Cell(None, "seed 0", "image missing or unreadable"), None], "drop 0.9", True)]

    page = grid_html(["seed 0", "seed 1"], rows, "normalized drop")

    assert page.count(f'id="{FOCUS_ID}"') == 1
    assert re.search(f'id="{FOCUS_ID}"[^>]*><div class="gallery-label"[^>]*>&lt;b&gt;layer 1&lt;/b&gt; ◀</div>', page)
    assert page.count("<img") == 1 and page.count("seed 1: not generated") == 2 and "<b>" not in page
    # Shown at its own pixel size, written in the markup, so the layout is final before the image is decoded.
    assert 'width="64" height="32"' in page and "height:32px" in page
    # Blocks of two 64-pixel seeds wrap to fill the width.
    assert "repeat(auto-fill,minmax(144px,1fr))" in page


def test_every_timestamp_has_one_format():
    moment = datetime(2026, 12, 2, 1, 2, 3, tzinfo=UTC)

    shown = {common.when(moment), common.when(moment.replace(tzinfo=None)), common.when(moment.isoformat()),
             common.when(moment.astimezone(timezone(timedelta(hours=5))))}

    assert shown == {"2026-12-02 01:02 UTC"} and common.when(None) == "–"


# Pages, driven with AppTest.

def open_app(monkeypatch, root, page: str | None = None, query: dict | None = None) -> AppTest:
    monkeypatch.setenv("LOCOLAB_ARTIFACTS", str(root))
    app = AppTest.from_file(str(MAIN), default_timeout=60)
    app.query_params.update(query or {})
    app.run()
    if page:
        app.switch_page(page).run()
    assert not app.exception, app.exception[0].value if app.exception else None
    return app


def charts(app: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in app.get("vega_lite_chart")]


@pytest.mark.slow  # AppTest runs of the whole app
def test_tracing_without_trace_data_says_so_and_locogen_comes_back(monkeypatch, planted):
    app = open_app(monkeypatch, planted, "views/layer_map.py")

    app.radio(key="map_method").set_value("Causal tracing").run()

    assert [i.value for i in app.info] == ["tiny-sd1 has no causal tracing: run `python -m compute trace CONFIG`."]
    assert not [box for box in app.selectbox if box.key == "map_scorer"]  # no empty "Choose an option" picker
    app.radio(key="map_method").set_value("LocoGen").run()
    assert not app.info and app.selectbox(key="map_scorer").value == PLANTED_SCORER
    assert layer(charts(app)[0], "cells")["mark"]["type"] == "rect"


@pytest.mark.slow
def test_the_window_selector_starts_on_the_minimal_window_and_opens_it_in_the_gallery(monkeypatch, planted):
    app = open_app(monkeypatch, planted, "views/layer_map.py")
    app.session_state["one_concept"] = True  # the one-concept section, opened
    app.run()
    # m = 1: nothing localizes; the largest drop is layer 8's (0.75).
    assert app.selectbox(key="map_start").value == 8
    app.selectbox(key="map_size").set_value(2).run()
    assert app.selectbox(key="map_start").value == 8  # the minimal window, 8-9

    app.button(key="open_gallery").click().run()

    assert app.title[0].value == "Gallery" and app.selectbox(key="gal_focus").value == 8
    assert (app.query_params["m"], app.query_params["window"], app.query_params["concept"]) == ("2", "8", "van gogh")
    grid = next(html.proto.body for html in app.get("html") if "gallery-block" in html.proto.body)
    focus = re.search(f'id="{FOCUS_ID}"[^>]*><div class="gallery-label"[^>]*>([^<]*)</div>(.*?)</div></div>', grid)
    assert focus.group(1) == "layers 8–9 ◀" and "drop 1.000 [1.000, 1.000] ●" in focus.group(2)
    # All 15 windows of m = 2 on one screen (the planted run has no images: each cell says so).
    assert grid.count('data-row="') == 15 and grid.count("no image") == (2 + 15) * 4


@pytest.mark.slow
def test_a_link_reproduces_the_view_and_an_older_url_restores_the_older_view(monkeypatch, planted):
    link = {"view": "locogen", "model": "tiny-sd1", "m": "2", "family": "color", "concept": "blue",
            "threshold": "0.7", "window": "3"}
    app = open_app(monkeypatch, planted, "views/layer_map.py", link)

    assert app.selectbox(key="map_size").value == 2 and app.slider(key="threshold").value == 0.7
    assert app.selectbox(key="map_concept").value == ("color", "blue") and app.selectbox(key="map_start").value == 3
    assert "window size m = 2" in charts(app)[0]["title"]["text"]
    assert {k: app.query_params[k] for k in link} == link and app.query_params["run"] == PLANTED
    shared = dict(app.query_params)

    app.selectbox(key="map_size").set_value(1).run()
    assert app.query_params["m"] == "1"
    app.query_params.clear()
    app.query_params.update(shared)  # what Back does: the page reruns with the older URL
    app.run()
    assert app.selectbox(key="map_size").value == 2 and "window size m = 2" in charts(app)[0]["title"]["text"]
    # Away to the Overview (which forgets the map's widgets) and back to the map's own URL: the same view.
    app.switch_page("views/overview.py").run()
    app.query_params.clear()
    app.query_params.update(shared)
    app.switch_page("views/layer_map.py").run()
    assert app.selectbox(key="map_size").value == 2 and app.selectbox(key="map_concept").value == ("color", "blue")


@pytest.mark.slow
def test_the_map_states_the_runs_settings_above_it(monkeypatch, planted):
    app = open_app(monkeypatch, planted, "views/layer_map.py")

    line = next(m.value for m in app.markdown if m.value.startswith("**run**"))

    assert f"**run** {PLANTED}" in line and "**seeds** 0, 1, 2, 3" in line and "**normalized by** target prompt" in line
    assert re.search(r"\*\*created\*\* \d{4}-\d\d-\d\d \d\d\\:\d\d UTC", line)


@pytest.mark.slow
def test_overview_shows_one_timestamp_format_and_every_row(monkeypatch, planted):
    for i in range(common.TABLE_PAGE + 1):
        write_table("runs", [dict(run_id=f"r{i:03d}", model="tiny-sd1", status="finished", shard=0, num_shards=1,
                                  method="locogen", created_at=datetime(2026, 1, 1, tzinfo=UTC))], f"r{i:03d}",
                    root=planted / "more")
    app = open_app(monkeypatch, planted)
    runs = app.dataframe[0].value
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", runs["created_at"][0])

    app = open_app(monkeypatch, planted / "more")
    assert len(app.dataframe[0].value) == common.TABLE_PAGE and app.get("pagination")[0].proto.num_pages == 2
    assert set(app.dataframe[0].value["created_at"]) == {"2026-01-01 00:00 UTC"}


def test_an_edit_names_its_layers_as_runs():
    from locolab.dashboard.edit_view import edited

    assert [edited({"layers": layers}) for layers in ([8, 9], [12], list(range(16)), [7, 1, 2, 5, 8])] == \
        ["layers 8–9", "layer 12", "layers 0–15", "layers 1–2, 5, 7–8"]
    assert edited({"layers": None, "modules": ["text_encoder.encoder.layers.0.self_attn.out_proj"]}) == \
        "text_encoder layer 0 out_proj"
    assert edited({"modules": ["text_encoder.encoder.block.0.layer.0.SelfAttention.o", "unet.x"]}) == \
        "text_encoder layer 0 o, unet.x"
