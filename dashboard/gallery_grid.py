"""The compact gallery: every window of one m on one screen, as one HTML grid of blocks (one per window: its label, one
small thumbnail per seed, its normalized drop and interval) that wrap to fill the page's width, at 1280 as at 1920
pixels; the focused block highlighted and scrolled into view without scrolling the controls above away.

One HTML element instead of a Streamlit image per cell: a 70-layer model's windows times four seeds are hundreds of
images, which as separate elements take seconds to lay out; as one element they are one message of small PNGs. Every
thumbnail is shown at its own pixel size (small images enlarged by whole factors, nearest-neighbour), never rescaled
by the browser.
"""

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from PIL import Image

THUMB = 96  # longest side of a thumbnail, in pixels, when the grid holds at most DENSE images
FULL = 512  # images shown at a column's width are first enlarged to at least this side (``enlarged``)
SMALL_THUMB, DENSE = 64, 48  # ... and when it holds more (four seeds of 16 windows fit a 1280 x 800 screen)
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
    """One block of the grid: a label, one cell per seed (None: not generated), and what the window measured."""

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


def thumb_side(images: int) -> int:
    """The thumbnails' longest side for a grid of ``images`` images: smaller when there are many."""
    return THUMB if images <= DENSE else SMALL_THUMB


def enlarged(image: bytes, side: int = FULL) -> bytes:
    """``image`` (encoded) enlarged by the smallest whole factor that makes its longer side at least ``side``, with
    nearest-neighbour sampling, as a PNG; an image already that large is returned as it is. Shown scaled to a
    column's width, the browser then shrinks it (sharp) rather than enlarging a small image (blurred).

    Raises:
        OSError: not an image.
    """
    with Image.open(io.BytesIO(image)) as picture:
        longest = max(picture.size)
        if longest >= side:
            return image
        factor = -(-side // longest)
        picture = picture.convert("RGB").resize((picture.width * factor, picture.height * factor),
                                                Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return buffer.getvalue()


def _size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:  # reads the header only
        return image.size


def _cell(cell: Cell | None, column: str, side: int) -> str:
    style = f"margin:0;width:{side}px;font-size:10px;color:#444;line-height:1.2"
    if cell is None:
        return f'<figure style="{style}"><div style="color:#888">{html.escape(column)}: not generated</div></figure>'
    caption = f"<figcaption>{html.escape(cell.caption)}</figcaption>"
    if cell.png is None:
        return f'<figure style="{style}"><div style="color:#888">{html.escape(cell.note)}</div>{caption}</figure>'
    source = "data:image/png;base64," + base64.b64encode(cell.png).decode()
    width, height = _size(cell.png)
    # Shown at its own size, written out, so the grid has its final layout before any image is decoded and the
    # focused block scrolled into view stays there.
    return (f'<figure style="{style}"><img src="{source}" alt="{html.escape(cell.caption)}" width="{width}" '
            f'height="{height}" style="width:{width}px;height:{height}px;image-rendering:pixelated;display:block">'
            f"{caption}</figure>")


def grid_html(columns: list[str], rows: list[Row], legend: str) -> str:
    """The grid as one HTML element: ``legend`` (what each block's numbers are), then one block per row with its
    label, one cell per seed of ``columns`` and its ``stat``; blocks wrap to fill the width. The focused block is
    highlighted, with the id ``FOCUS_ID``. All text is escaped."""
    sides = [max(_size(cell.png)) for row in rows for cell in row.cells if cell is not None and cell.png is not None]
    side = max(sides, default=THUMB)
    width = len(columns) * (side + 3) + 10
    blocks = []
    for row in rows:
        attributes = f' id="{FOCUS_ID}" style="padding:2px 4px;{_FOCUS_STYLE}"' if row.focus else \
            ' style="padding:2px 4px"'
        anchor = f' data-row="{html.escape(row.anchor)}"' if row.anchor else ""
        cells = "".join(_cell(cell, column, side) for cell, column in zip(row.cells, columns))
        blocks.append(f'<div class="gallery-block"{attributes}{anchor}>'
                      f'<div class="gallery-label" style="font-weight:600;font-size:13px;overflow-wrap:anywhere">'
                      f'{html.escape(row.label)}{" ◀" if row.focus else ""}</div>'
                      f'<div style="display:flex;gap:3px">{cells}</div>'
                      f'<div style="font-size:11px;color:#333">{html.escape(row.stat)}</div></div>')
    return (f'<div style="font-size:12px;color:#555;margin-bottom:2px">{html.escape(legend)}</div>'
            f'<div style="position:relative;display:grid;grid-template-columns:repeat(auto-fill,minmax({width}px,1fr));'
            'gap:4px 6px">'
            f'{"".join(blocks)}</div>')


# Runs in the page (st.html with JavaScript allowed); it holds no stored text. When the grid is taller than the room
# left under the controls, it becomes a scroll area of that height (at least 320 px) scrolled to the focused block,
# so that the controls stay in view; the page itself scrolls only if the block is still out of view. Once at once and
# once more when the grid's images are decoded, in case anything above it changed height meanwhile.
SCROLL_SCRIPT = (f'<script>const row = document.getElementById("{FOCUS_ID}"); '
                 'if (row) { const grid = row.parentElement; const fit = () => { '
                 'const room = Math.max(320, window.innerHeight - grid.getBoundingClientRect().top - 8); '
                 'if (grid.scrollHeight > room) { grid.style.maxHeight = room + "px"; grid.style.overflowY = "auto"; } '
                 'grid.scrollTop = row.offsetTop - (grid.clientHeight - row.offsetHeight) / 2; '
                 'row.scrollIntoView({block: "nearest"}); }; fit(); '
                 'Promise.all([...grid.querySelectorAll("img")].map(i => i.decode().catch(() => null))).then(fit); }'
                 '</script>')
