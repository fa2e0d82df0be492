"""Exported figures (vl-convert, no browser) look as on screen and stand on their own: every label inside the canvas
(read back from the SVG, and no ink at the PNG's edges); no axis lines or tick stubs on the maps; the metadata once,
in one title; the shipped font draws "–" in the figures and the figure sheets."""

import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow as pa
import pytest
from dashboard_fixtures import PLANTED, PLANTED_SCORER, add_planted_run, cell_grid
from PIL import Image, ImageFont

from locolab.contract import queries
from locolab.contract.figures import heat_map, line_view
from locolab.contract.store import Store, write_table
from locolab.dashboard import exports
from locolab.dashboard.map_view import only

LAYERS = {i: {"path": f"unet.block{i}.attn2", "block": "down" if i < 6 else "up", "resolution": 4} for i in range(16)}
ABOUT = "tiny-sd1 · run planted · scorer clip · seeds 0, 1"
TITLE = exports.title_text("LocoGen heat map", model="tiny-sd1", run=PLANTED, scorer=PLANTED_SCORER, seeds=[0, 1],
                           m=2, threshold="0.5", interval="95%")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """The planted run's heat map (m = 2) and van gogh's line view, as the Layer map draws them."""
    root = tmp_path_factory.mktemp("planted-exports")
    add_planted_run(root)
    write_table("layers", [dict(run_id=PLANTED, model="tiny-sd1", index=i, component="cross-attention", **info)
                           for i, info in LAYERS.items()], PLANTED, root=root)
    con = Store(root).connect()
    loc = queries.localization_table(con, PLANTED, 0.95)
    cells = queries.layer_cells(loc, PLANTED_SCORER, 2, 0.5)
    seeds = queries.seed_scores(con, PLANTED, PLANTED_SCORER, "style", "van gogh")
    from locolab.contract.summaries import judge
    return (heat_map(cells, queries.minimal_windows(loc, PLANTED_SCORER, 0.5), LAYERS, 16, 2, 0.5, about=ABOUT),
            line_view(only(judge(loc, 0.5), family="style", concept="van gogh"), seeds, 2, 0.5, LAYERS, ABOUT))


def _translate(transform: str | None) -> tuple[float, float]:
    found = re.search(r"translate\(\s*([-\d.e]+)[ ,]*([-\d.e]*)\s*\)", transform or "")
    return (float(found[1]), float(found[2] or 0)) if found else (0.0, 0.0)


def _rotated(transform: str | None) -> bool:
    found = re.search(r"rotate\(\s*([-\d.e]+)", transform or "")
    return bool(found) and float(found[1]) != 0


def text_boxes(svg: bytes) -> tuple[tuple[float, float], list[tuple[str, float, float]]]:
    """The canvas's (width, height) and every horizontal text line of an SVG as (text, left, right): its position
    from its own and its ancestors' translations, its width measured in the font it names (the shipped DejaVu
    Sans)."""
    root = ET.fromstring(svg)
    lines = []

    def walk(node, dx, dy, rotated):
        tx, ty = _translate(node.get("transform"))
        dx, dy, rotated = dx + tx, dy + ty, rotated or _rotated(node.get("transform"))
        if node.tag == f"{SVG}text" and not rotated:
            assert node.get("font-family") == exports.FONT_FAMILY
            font = ImageFont.truetype(str(exports.FONT), round(float(node.get("font-size").removesuffix("px"))))
            anchor = node.get("text-anchor", "start")
            parts = node.findall(f"{SVG}tspan") or [node]
            for part in parts:
                text = "".join(part.itertext()) if part is not node else (node.text or "")
                if not text.strip():
                    continue
                width = font.getlength(text)
                x = dx + float(part.get("x", node.get("x", 0)))
                left = x - {"start": 0, "middle": width / 2, "end": width}[anchor]
                lines.append((text, left, left + width))
        for child in node:
            walk(child, dx, dy, rotated)

    walk(root, 0.0, 0.0, False)
    return (float(root.get("width")), float(root.get("height"))), lines


@pytest.mark.slow  # the planted run's localization: ~1 s
def test_an_export_has_a_fixed_width_the_shipped_font_and_one_title(figures):
    heat, line = figures
    out = exports.titled(heat, TITLE)

    assert out["width"] == exports.EXPORT_WIDTH and out["config"]["font"] == exports.FONT_FAMILY
    assert out["title"]["text"] == exports.title_lines(TITLE) and heat["title"]["text"] != out["title"]["text"]
    # The figure's own title repeated model, run, scorer and seeds: under the export's title only the legend stays.
    assert out["title"]["subtitle"].startswith("● drop > 0.5 by the paired test") and "seeds" not in out["title"][
        "subtitle"]
    page = exports.figure_bytes(line, "html", TITLE).decode()
    assert page.count("seeds 0, 1") == 2  # the HTML page's <title> and the figure's title: no third copy
    assert page.count(ABOUT) == 0
    # Self-contained: Vega's JavaScript is inside the page, nothing is fetched.
    assert "vegaEmbed" in page and not re.search(r"<script[^>]+src=", page) and len(page) > 500_000


def test_a_long_title_breaks_at_its_separators():
    title = " · ".join(["LocoGen heat map", *(f"part {i} " + "x" * 30 for i in range(8))])
    lines = exports.title_lines(title, 100)
    assert " · ".join(lines) == title and all(len(line) <= 100 for line in lines) and len(lines) == 4


@pytest.mark.slow  # vl-convert: ~3 s
def test_exported_svg_and_png_keep_every_label_inside_the_canvas(figures):
    heat, line = figures
    for figure, names in ((heat, ["style · van gogh", "color · blue (not measurable)", "0", "15", "down", "up",
                                  "(scale 0–1;", "▲ > 1, ▼ < 0)", "●"]),
                          (line, ["0.5", "0.4"])):
        svg = exports.figure_bytes(figure, "svg", TITLE)
        (width, height), boxes = text_boxes(svg)
        shown = {text for text, _, _ in boxes}
        assert set(names) <= shown, sorted(shown)
        outside = [(text, round(left), round(right)) for text, left, right in boxes if left < 0 or right > width]
        assert outside == [], (width, outside)
        assert sum(TITLE.split(" · ")[0] in text for text in shown) == 1  # one title
    document = exports.figure_bytes(heat, "svg", TITLE).decode()
    assert "role-axis-domain" not in document and "role-axis-tick" not in document  # no axis lines or tick stubs
    assert document.count("<path") > 2 * 16  # every cell drawn

    png = np.asarray(Image.open(io.BytesIO(exports.figure_bytes(heat, "png", TITLE))).convert("L"))
    edge = 6  # px at scale 2: a label cut at the figure's edge leaves ink here
    (width, height), _ = text_boxes(document.encode())
    assert png.shape == (height * exports.PNG_SCALE, width * exports.PNG_SCALE) and width > exports.EXPORT_WIDTH
    assert png[:, :edge].min() == 255 and png[:, -edge:].min() == 255 and png[:edge].min() == 255


def test_the_figure_sheet_font_draws_dashes_and_marks_not_boxes():
    def caption(text: str) -> bytes:
        return exports.figure_sheet("", ["layers 8–9"], [("seed 0", [exports.SheetCell(None, text)])])

    missing = caption("\uffff")  # a character no font here has: the missing-glyph box
    assert all(caption(text) != missing for text in ("–", "≈", "▲", "●", "…"))
    # The dash is a dash: far less ink than the box.
    ink = [int((np.asarray(Image.open(io.BytesIO(caption(text))).convert("L")) < 128).sum()) for text in ("", "–")]
    box = int((np.asarray(Image.open(io.BytesIO(missing)).convert("L")) < 128).sum()) - ink[0]
    assert 0 < ink[1] - ink[0] < box / 2


def test_a_csv_says_what_its_numbers_are_about_and_how_many_lines_to_skip():
    from locolab.dashboard.map_view import MapState, csv_meta

    state = MapState(model="tiny-sd1", method="LocoGen", run_id=PLANTED, scorer=PLANTED_SCORER, threshold=0.4,
                     level=0.9, run={"seeds": [0, 1]})
    rows = [{"concept": "van gogh", "window": "layers 8–9", "drop": 0.91}]
    text = exports.table_csv(rows, csv_meta(state, 2)).decode()
    skip = int(re.search(r"skiprows=(\d+)", text.splitlines()[0])[1])
    head, body = text.splitlines()[:skip], text.splitlines()[skip:]

    assert body == exports.table_csv(rows).decode().splitlines() == ["concept,window,drop", "van gogh,layers 8–9,0.91"]
    assert all(line.startswith("# ") for line in head)
    assert dict(line[2:].split(": ", 1) for line in head[1:]) == {
        "model": "tiny-sd1", "run": PLANTED, "scorer": PLANTED_SCORER, "seeds": "0, 1", "threshold": "0.4",
        "level": "90%", "adjustment": "holm (over each concept's windows)",
        "selection": "auto (the verdict says whether the window was confirmed on held-out seeds)",
        "window size shown": "2"}


@pytest.mark.slow  # the planted run's localization: ~1 s
def test_a_running_run_is_drawn_and_exported_as_partial(tmp_path):
    from locolab.contract.summaries import run_settings
    from locolab.dashboard.map_view import run_partial

    add_planted_run(tmp_path, status="running")
    con = Store(tmp_path).connect()
    (run,) = run_settings(con).to_pylist()
    assert run_partial(run) == "status running: not every shard has finished"
    loc = queries.localization_table(con, PLANTED, 0.95)
    figure = heat_map(queries.layer_cells(loc, PLANTED_SCORER, 2, 0.5), queries.minimal_windows(loc, PLANTED_SCORER,
                      0.5), LAYERS, 16, 2, 0.5, about=ABOUT, partial=run_partial(run))

    legend = exports.titled(figure, TITLE)["title"]["subtitle"]
    assert legend.startswith("PARTIAL RUN (status running: not every shard has finished) · ● drop")
    assert figure["title"]["subtitle"][-1] == legend
    finished = dict(run, finished=True, status="finished")
    assert run_partial(finished) == "" and run_partial(None) == ""


def test_a_still_running_trace_is_drawn_as_partial():
    from locolab.contract.figures import trace_map

    def cells(partial: bool):
        return pa.Table.from_pylist([
            {"family": "style", "concept": "van gogh", "site": site, "recovery": 0.2 * site, "recovery_low": 0.0,
             "recovery_high": 1.0, "n_units": 4, "partial": partial, "untraceable": False, "corruption_gap": 0.1,
             "score_mean": 0.3, "score_std": 0.01, "n_seeds": 2, "n_images": 4, "original_score": 0.4,
             "corrupted_score": 0.2} for site in range(3)])

    running = trace_map(cells(True), {}, 3, "cross-attention", 0.5)
    done = trace_map(cells(False), {}, 3, "cross-attention", 0.5)

    assert running["title"]["subtitle"][-1].startswith("PARTIAL RUN (still running: not every unit is in yet) · ")
    assert "PARTIAL" not in str(done["title"])
    # Its intervals rest on 4 units: the tooltip says they cover less than their level.
    assert cell_grid(done, "recovery")[0, 0] == (
        "0.000 [0.000, 1.000] over 4 units ⚠ fewer than 8: the interval covers less than its level")


def _png(color, size=32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


VERDICTS = [{"family": "style", "concept": "van gogh", "window": "layers 8–9", "drop [interval]": "0.91 [0.80, 1.00]",
             "units": 8, "verdict": "localizes at layers 8–9 (m=2), selected (optimistic): " + "drop 0.91, " * 40},
            {"family": "color", "concept": "blue <b>", "window": "none", "units": 2, "verdict": "not measurable"}]


def paper(heat):
    from locolab.dashboard.paper_figure import paper_figure

    strips = [("style · van gogh\nlayers 8–9", [exports.SheetCell(_png((200, 40, 10)), "score 0.750"),
                                                  exports.SheetCell(_png((10, 40, 200)), "score 0.250"),
                                                  exports.SheetCell(None)])]
    return paper_figure(heat, ["original", "target", "minimal window"], strips, VERDICTS)


def _texts(view: dict) -> list[str]:
    """Every text a view of the paper figure draws (its text layers' rows)."""
    return [row["text"] for part in view["layer"] if part["mark"]["type"] == "text" for row in part["data"]["values"]]


def _images(view: dict) -> list[dict]:
    return [row for part in view["layer"] if part["mark"]["type"] == "image" for row in part["data"]["values"]]


@pytest.mark.slow  # the planted run's localization: ~1 s
def test_the_paper_figure_stacks_heat_map_images_and_full_verdicts_without_overlap(figures):
    from locolab.dashboard.paper_figure import CAPTION, IMAGE, paper_figure

    heat, _ = figures
    figure = paper(heat)

    # Top to bottom, stacked so they cannot overlap: the heat map (its title the figure's), the images, the table.
    top, strips, table = figure["vconcat"]
    assert [part.get("name") for part in top["layer"]] == [part.get("name") for part in heat["layer"]]
    assert figure["title"] == heat["title"] and "title" not in top
    images = _images(strips)
    assert len(images) == 2 and all(image["url"].startswith("data:image/png;base64,") for image in images)
    # Side by side in one row, each image's caption under it, all inside the view.
    assert [image["x"] for image in images] == [220, 220 + IMAGE + 10] and images[0]["y"] == images[1]["y"]
    assert max(image["y"] for image in images) + IMAGE + CAPTION <= strips["height"]
    assert _texts(strips).count("missing") == 1 and "score 0.750" in _texts(strips)
    # Every verdict in full (the table wraps it), stored text drawn as it is.
    shown = _texts(table)
    assert [" ".join(text.split("\n")) for text in shown if text.startswith(("localizes", "not measurable"))] == [
        VERDICTS[0]["verdict"].strip(), "not measurable"]
    assert "blue <b>" in shown
    # A 32-px image is enlarged nearest-neighbour: one colour, no blend.
    data = images[0]["url"].split(",", 1)[1]
    picture = Image.open(io.BytesIO(__import__("base64").b64decode(data))).convert("RGB")
    assert picture.size == (128, 128) and len(picture.getcolors()) == 1
    empty = paper_figure(heat, ["original"], [], VERDICTS)["vconcat"][1]
    assert _texts(empty) == ["No concept of this family localizes: no minimal-window images."]
    assert not _images(empty)


@pytest.mark.slow  # vl-convert
def test_the_paper_figure_exports_as_one_pdf_and_one_svg_with_every_label_inside(figures):
    figure = paper(figures[0])
    svg = exports.figure_bytes(figure, "svg", TITLE)
    (width, _), boxes = text_boxes(svg)

    assert all(image["url"] in svg.decode() for image in _images(figure["vconcat"][1]))  # embedded in the file
    shown = " ".join(text for text, _, _ in boxes)
    assert "style · van gogh" in shown and "minimal window" in shown and "localizes at layers 8–9" in shown
    assert [(text, round(left)) for text, left, right in boxes if left < 0 or right > width] == []
    assert exports.figure_bytes(figure, "pdf", TITLE).startswith(b"%PDF")


def test_a_concept_row_of_the_paper_figure_shows_its_first_prompt_and_seed_at_its_minimal_window(tmp_path):
    from locolab.dashboard.downloads import minimal_strip
    from locolab.dashboard.files import RootFiles

    for name, color in (("o.png", (1, 1, 1)), ("t.png", (2, 2, 2)), ("w8.png", (3, 3, 3)), ("w9.png", (4, 4, 4))):
        (tmp_path / name).write_bytes(_png(color))

    def case(kind, path, seed=0, start=None, prompt="a painting by van gogh", score=0.5):
        return {"kind": kind, "image_path": path, "seed": seed, "window_start": start, "prompt": prompt,
                "score": score}

    cases = [case("original", "o.png"), case("target", "t.png", score=None), case("window", "w8.png", start=8),
             case("window", "w9.png", start=9), case("window", "w9.png", seed=1, start=8),
             case("original", "w9.png", prompt="z prompt")]
    window = {"family": "style", "concept": "van <gogh>", "window_start": 8, "window_size": 2}

    label, cells = minimal_strip(cases, window, RootFiles(str(tmp_path)))

    assert label == "style · van <gogh>\nlayers 8–9"
    assert [cell.image == (tmp_path / name).read_bytes() for cell, name in zip(cells, ("o.png", "t.png", "w8.png"))] \
        == [True, True, True]
    assert [cell.caption for cell in cells] == ["score 0.500", "–", "score 0.500"]
