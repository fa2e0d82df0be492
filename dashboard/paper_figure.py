"""The paper figure of one concept family: its LocoGen heat map, each concept's images at its minimal localizing
window (original, target, the window) and the verdict table, in one Plotly figure that exports as one PDF or SVG
(``exports.figure_bytes``). Torch-free and Streamlit-free; the Layer map's button is in ``dashboard.downloads``.

Usage: ``figure_bytes(paper_figure(heat, ["original", "target", "minimal window"], strips, verdicts), "pdf", title)``
"""

import base64
import html
import io
import math

import plotly.graph_objects as go

from locolab.dashboard.exports import EXPORT_WIDTH, SheetCell, scaled_picture

IMAGE = 128  # px: each image's side (small images enlarged nearest-neighbour, so their pixels stay visible)
ROW_GAP, AXIS_ROOM, HEADER, CAPTION = 10, 80, 24, 18
VERDICT_CHARS = 120  # characters of a verdict per table line at the export's width (the table wraps them)
TABLE_COLUMNS = ("concept", "window", "drop [interval]", "units", "verdict")


def _data_uri(image: bytes | None) -> str | None:
    """A PNG data URI of ``image`` enlarged (or shrunk) to ``IMAGE`` px, or None when it does not decode."""
    picture = scaled_picture(image, IMAGE)
    if picture is None:
        return None
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _table_height(verdicts: list[dict]) -> int:
    lines = [max(1, math.ceil(len(str(row.get("verdict", ""))) / VERDICT_CHARS)) for row in verdicts]
    return 34 + sum(8 + 16 * n for n in lines)


def paper_figure(heat: go.Figure, columns: list[str], strips: list[tuple[str, list[SheetCell]]],
                 verdicts: list[dict]) -> go.Figure:
    """``heat`` (the family's heat map, ``contract.figures.heat_map``) on top, then one row of images per concept
    (``strips``: the row's label as Plotly text, one ``SheetCell`` per column, its caption under it), then the table of
    ``verdicts`` (``map_view.verdict_table`` rows) with every verdict wrapped in full.

    Positions are in pixels turned into fractions of the plot's height, so the parts never overlap whatever the
    number of concepts; the heat map's colour bar spans the heat map only. Without strips a line says that no concept
    localizes.
    """
    figure = go.Figure(heat)
    heat_height = (heat.layout.height or 300) - (heat.layout.margin.t or 0) - (heat.layout.margin.b or 0)
    strips_height = HEADER + len(strips) * (IMAGE + CAPTION + ROW_GAP)
    table_height = _table_height(verdicts)
    total = heat_height + AXIS_ROOM + strips_height + ROW_GAP + table_height
    top_of_table = table_height / total
    figure.update_yaxes(domain=[1 - heat_height / total, 1])
    figure.update_traces(colorbar={"len": heat_height / total, "lenmode": "fraction", "y": 1, "yanchor": "top"},
                         selector={"type": "heatmap"})
    width = EXPORT_WIDTH - 340  # the plot area's width, less the margins the labels and the colour bar take
    label_room = 0.22
    top = 1 - (heat_height + AXIS_ROOM) / total
    if not strips:
        figure.add_annotation(x=0, y=top, xref="paper", yref="paper", xanchor="left", yanchor="top", showarrow=False,
                              text="No concept of this family localizes: no minimal-window images.", font={"size": 12})
    for j, name in enumerate(columns if strips else []):
        figure.add_annotation(x=label_room + j * (IMAGE + ROW_GAP) / width, y=top, xref="paper", yref="paper",
                              xanchor="left", yanchor="top", showarrow=False, text=f"<b>{name}</b>",
                              font={"size": 12})
    for i, (label, cells) in enumerate(strips):
        row_top = top - (HEADER + i * (IMAGE + CAPTION + ROW_GAP)) / total
        figure.add_annotation(x=0, y=row_top - IMAGE / 2 / total, xref="paper", yref="paper", xanchor="left",
                              yanchor="middle", showarrow=False, text=label, font={"size": 12}, align="left")
        for j, cell in enumerate(cells[:len(columns)]):
            x = label_room + j * (IMAGE + ROW_GAP) / width
            source = _data_uri(cell.image)
            if source:
                figure.add_layout_image(source=source, x=x, y=row_top, xref="paper", yref="paper", sizex=IMAGE / width,
                                        sizey=IMAGE / total, xanchor="left", yanchor="top", sizing="contain",
                                        layer="above")
            else:
                figure.add_annotation(x=x, y=row_top - IMAGE / 2 / total, xref="paper", yref="paper", xanchor="left",
                                      showarrow=False, text="missing", font={"size": 11, "color": "#777"})
            if cell.caption:
                figure.add_annotation(x=x, y=row_top - IMAGE / total, xref="paper", yref="paper", xanchor="left",
                                      yanchor="top", showarrow=False, text=html.escape(cell.caption, quote=False),
                                      font={"size": 11})
    figure.add_trace(go.Table(
        domain={"x": [0, 1], "y": [0, top_of_table]}, columnwidth=[150, 90, 130, 45, 700],
        header={"values": [f"<b>{name}</b>" for name in TABLE_COLUMNS], "align": "left", "fill_color": "#eeeeee",
                "font": {"size": 11}},
        cells={"values": [[html.escape(str(row.get(name, "")), quote=False) for row in verdicts]
                          for name in TABLE_COLUMNS], "align": "left",
               "font": {"size": 10}, "height": 24}))
    figure.update_layout(height=total + (heat.layout.margin.t or 0) + (heat.layout.margin.b or 0),
                         clickmode="none")
    return figure
