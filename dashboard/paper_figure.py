"""The paper figure of one concept family: its LocoGen heat map, each concept's images at its minimal localizing
window (original, target, the window) and the verdict table, in one Vega-Lite composition that exports as one PDF or
SVG (``exports.figure_bytes``). Torch-free and Streamlit-free; the Layer map's button is in ``dashboard.downloads``.

Usage: ``figure_bytes(paper_figure(heat, ["original", "target", "minimal window"], strips, verdicts), "pdf", title)``
"""

import base64
import copy
import io
import textwrap

from locolab.dashboard.exports import EXPORT_WIDTH, SheetCell, scaled_picture

IMAGE = 128  # px: each image's side (small images enlarged nearest-neighbour, so their pixels stay visible)
ROW_GAP, HEADER, CAPTION, LABEL_ROOM = 10, 24, 18, 220  # px
LINE = 15  # px per line of the verdict table
VERDICT_CHARS = 72  # characters of a verdict per table line (the table wraps them)
TABLE_COLUMNS = (("concept", 0), ("window", 160), ("drop [interval]", 250), ("units", 400), ("verdict", 450))
PIXELS = {"type": "quantitative", "scale": None, "axis": None}  # a field that holds a position in pixels


def _data_uri(image: bytes | None) -> str | None:
    """A PNG data URI of ``image`` enlarged (or shrunk) to ``IMAGE`` px, or None when it does not decode."""
    picture = scaled_picture(image, IMAGE)
    if picture is None:
        return None
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _texts(values: list[dict], **mark) -> dict:
    """A layer of text at pixel positions (``x``, ``y``, ``text``; ``bold`` rows drawn bold)."""
    return {"data": {"values": values},
            "mark": {"type": "text", "align": "left", "baseline": "top", "fontSize": 12, "lineBreak": "\n", **mark},
            "encoding": {"x": {"field": "x", **PIXELS}, "y": {"field": "y", **PIXELS}, "text": {"field": "text"},
                         "fontWeight": {"field": "weight", "type": "nominal", "scale": None}}}


def _strips(columns: list[str], strips: list[tuple[str, list[SheetCell]]]) -> dict:
    """One row of images per concept under a header of ``columns``: its label, then each image with its caption."""
    if not strips:
        return {"width": EXPORT_WIDTH, "height": 24, "layer": [_texts([{
            "x": 0, "y": 4, "weight": "normal", "text": "No concept of this family localizes: no minimal-window images."
        }])]}
    texts = [{"x": LABEL_ROOM + j * (IMAGE + ROW_GAP), "y": 0, "text": name, "weight": "bold"}
             for j, name in enumerate(columns)]
    images, missing = [], []
    for i, (label, cells) in enumerate(strips):
        top = HEADER + i * (IMAGE + CAPTION + ROW_GAP)
        texts.append({"x": 0, "y": top + IMAGE / 2 - 14, "text": label, "weight": "normal"})
        for j, cell in enumerate(cells[:len(columns)]):
            x = LABEL_ROOM + j * (IMAGE + ROW_GAP)
            source = _data_uri(cell.image)
            if source:
                images.append({"x": x, "y": top, "url": source})
            else:
                missing.append({"x": x, "y": top, "x2": x + IMAGE, "y2": top + IMAGE})
                texts.append({"x": x + 6, "y": top + IMAGE / 2 - 6, "text": "missing", "weight": "normal"})
            if cell.caption:
                texts.append({"x": x, "y": top + IMAGE + 3, "text": cell.caption, "weight": "normal"})
    layers = [{"data": {"values": missing}, "mark": {"type": "rect", "fill": "#e1e1e1"},
               "encoding": {"x": {"field": "x", **PIXELS}, "y": {"field": "y", **PIXELS}, "x2": {"field": "x2"},
                            "y2": {"field": "y2"}}}] if missing else []
    if images:
        layers.append({"data": {"values": images},
                       "mark": {"type": "image", "width": IMAGE, "height": IMAGE, "align": "left", "baseline": "top",
                                "smooth": False},
                       "encoding": {"x": {"field": "x", **PIXELS}, "y": {"field": "y", **PIXELS},
                                    "url": {"field": "url", "type": "nominal"}}})
    layers.append(_texts(texts))
    return {"width": EXPORT_WIDTH, "height": HEADER + len(strips) * (IMAGE + CAPTION + ROW_GAP), "layer": layers}


def _table(verdicts: list[dict]) -> dict:
    """The verdict table: one line per concept, its verdict wrapped in full over as many lines as it needs."""
    texts = [{"x": x, "y": 0, "text": name, "weight": "bold"} for name, x in TABLE_COLUMNS]
    y = LINE + 8
    for row in verdicts:
        wrapped = textwrap.wrap(str(row.get("verdict", "")), VERDICT_CHARS) or [""]
        for name, x in TABLE_COLUMNS:
            text = "\n".join(wrapped) if name == "verdict" else str(row.get(name, "") if row.get(name) is not None
                                                                    else "")
            texts.append({"x": x, "y": y, "text": text, "weight": "normal"})
        y += LINE * len(wrapped) + 6
    return {"width": EXPORT_WIDTH, "height": y,
            "layer": [_texts(texts, fontSize=11, lineHeight=LINE)]}


def paper_figure(heat: dict, columns: list[str], strips: list[tuple[str, list[SheetCell]]],
                 verdicts: list[dict]) -> dict:
    """``heat`` (the family's heat map, ``contract.figures.heat_map``) on top, then one row of images per concept
    (``strips``: the row's label, one ``SheetCell`` per column, its caption under it), then the table of ``verdicts``
    (``map_view.verdict_table`` rows) with every verdict wrapped in full. The parts are stacked (a vertical
    concatenation), so they never overlap whatever the number of concepts; the heat map's title is the figure's.
    Without strips a line says that no concept localizes."""
    top = copy.deepcopy(heat)
    title = top.pop("title", None)
    top.pop("$schema", None)
    top["width"] = EXPORT_WIDTH
    config = top.pop("config", {})
    top.pop("usermeta", None)
    return {"$schema": heat.get("$schema"), "title": title, "config": {**config, "view": {"stroke": None}},
            "vconcat": [top, _strips(columns, strips), _table(verdicts)], "spacing": 24,
            "resolve": {"scale": {"x": "independent", "y": "independent"}}}
