"""The compact gallery: every window of one m on one screen, as one HTML table (rows = windows, columns = seeds) of
small thumbnails, each row with its normalized drop and interval, the focused row highlighted and scrolled into view.

One HTML element instead of a Streamlit image per cell: a 70-layer model's windows times four seeds are hundreds of
images, which as separate elements take seconds to lay out; as one table they are one message of small PNGs.
"""

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from PIL import Image

THUMB = 96  # displayed side of a thumbnail, in pixels
FOCUS_ID = "gallery-focus"
_FOCUS_STYLE = "background:#fff3c4;outline:3px solid #1f3b73;outline-offset:-3px"


@dataclass
class Cell:
    """One image of the grid: its PNG thumbnail, or a note saying why there is none; a caption under it."""

    png: bytes | None
    caption: str
    note: str = ""


@dataclass
class Row:
    """One row of the grid: a label, one cell per seed column (None: not generated), and what the row measured."""

    label: str
    cells: list[Cell | None]
    stat: str = ""
    focus: bool = False
    anchor: str = field(default="")


def thumbnail(source: Path | BinaryIO, size: int = THUMB) -> bytes:
    """``source``'s image (a path or a binary file) as a PNG whose longer side is ``size``: a smaller image is enlarged
    by the largest whole factor with nearest-neighbour sampling (a 32-pixel image stays sharp pixels, not blur), a
    larger one is reduced smoothly.

    Raises:
        OSError: the file is missing or not an image.
    """
    with Image.open(source) as image:
        image = image.convert("RGB")
        side = max(image.size)
        if side <= size:
            factor = max(1, size // side)
            image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
        else:
            scale = size / side
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()


def _cell(cell: Cell | None) -> str:
    if cell is None:
        return '<td style="color:#888;font-size:12px">not generated</td>'
    caption = f'<div style="font-size:11px;color:#444">{html.escape(cell.caption)}</div>'
    if cell.png is None:
        return f'<td style="font-size:11px;color:#888">{html.escape(cell.note)}{caption}</td>'
    source = "data:image/png;base64," + base64.b64encode(cell.png).decode()
    with Image.open(io.BytesIO(cell.png)) as image:  # reads the header only
        width, height = image.size
    # The displayed size is written out, so the table has its final layout before any image is decoded and the
    # focused row scrolled into view stays there.
    shown = round(THUMB * height / width)
    return (f'<td><img src="{source}" alt="{html.escape(cell.caption)}" width="{THUMB}" height="{shown}" '
            f'style="width:{THUMB}px;height:{shown}px;image-rendering:pixelated;display:block">{caption}</td>')


def grid_html(columns: list[str], rows: list[Row], stat_heading: str) -> str:
    """The grid as one HTML table: a header of ``columns`` (seeds), then each row's label, cells and ``stat``; the
    row with ``focus`` highlighted, with the id ``FOCUS_ID``. All text is escaped."""
    head = "".join(f'<th style="text-align:left;padding:2px 6px">{html.escape(c)}</th>' for c in columns)
    body = []
    for row in rows:
        attributes = f' id="{FOCUS_ID}" style="{_FOCUS_STYLE}"' if row.focus else ""
        anchor = f' data-row="{html.escape(row.anchor)}"' if row.anchor else ""
        cells = "".join(_cell(cell) for cell in row.cells)
        body.append(f'<tr{attributes}{anchor}><th style="text-align:left;padding:2px 6px;white-space:nowrap">'
                    f'{html.escape(row.label)}{" ◀" if row.focus else ""}</th>{cells}'
                    f'<td style="font-size:12px;padding:2px 6px">{html.escape(row.stat)}</td></tr>')
    return ('<div style="overflow-x:auto"><table style="border-collapse:collapse">'
            f'<thead><tr><th></th>{head}<th style="text-align:left;padding:2px 6px">{html.escape(stat_heading)}</th>'
            f'</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


# Runs in the page (st.html with JavaScript allowed); it holds no stored text. It scrolls once at once and once more
# when the table's images are decoded, in case anything above the row changed height meanwhile.
SCROLL_SCRIPT = (f'<script>const row = document.getElementById("{FOCUS_ID}"); '
                 'if (row) { const show = () => row.scrollIntoView({block: "center"}); show(); '
                 'Promise.all([...row.closest("table").querySelectorAll("img")].map(i => i.decode().catch(() => null)))'
                 '.then(show); }</script>')
