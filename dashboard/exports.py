"""What the dashboard lets a researcher take away, each self-describing: figures as SVG, PNG or PDF (Plotly's static
export through kaleido, which drives a Chromium the host provides) or as interactive HTML (always available), the
figure sheet of one concept's images (PIL), tables as CSV, and an edit as a zip.

Every export carries a title naming what it shows: the model, the run, the concept, the scorer and the seeds.
Torch-free and Streamlit-free; the pages' buttons are in ``dashboard.downloads``.

Usage: ``figure_bytes(figure, "svg", title_text("LocoGen heat map", model="toyworld", run="r1", scorer="clip"))``
"""

import csv
import functools
import html
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
import pyarrow as pa
import pyarrow.csv as pcsv
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from locolab.contract.names import EDIT_RECORD, EDIT_SUMMARY

STATIC = ("svg", "png", "pdf")
MIME = {"svg": "image/svg+xml", "png": "image/png", "pdf": "application/pdf", "html": "text/html",
        "csv": "text/csv", "zip": "application/zip"}
# The size of a static export (Plotly's pixels; PNG at twice that for print).
EXPORT_WIDTH, MIN_HEIGHT, PNG_SCALE = 1400, 420, 2
TITLE_KEY = "Title"  # the PNG text chunk that carries a figure sheet's title


def title_text(what: str, *, model: str | None = None, run: str | None = None, concept: str | None = None,
               scorer: str | None = None, seeds=None, **more) -> str:
    """One line saying what an export shows: ``what``, then model, run, concept, scorer, seeds and any ``more``
    (name=value) that are given.

    Usage: ``title_text("Gallery", model="toyworld", concept="style · stripes", seeds=[0, 1], m=1)``
    """
    parts = [what]
    for name, value in (("model", model), ("run", run), ("concept", concept), ("scorer", scorer)):
        if value not in (None, ""):
            parts.append(f"{name} {value}")
    if seeds is not None:
        listed = list(seeds)
        parts.append(f"seed{'s' if len(listed) != 1 else ''} {', '.join(map(str, listed)) or 'none'}")
    parts += [f"{name.replace('_', ' ')} {value}" for name, value in more.items() if value not in (None, "")]
    return " · ".join(str(part) for part in parts)


def file_stem(*parts) -> str:
    """A file name stem from ``parts``: letters, digits, '.', '_' and '-' kept, anything else '-'."""
    text = "-".join(str(part) for part in parts if part not in (None, ""))
    return "".join(char if char.isalnum() or char in "._-" else "-" for char in text).strip("-")[:150] or "export"


# An explicit template: an export must not take the template of the process it runs in (the dashboard's is
# Streamlit's, whose placeholder colours only its front end replaces: black zero lines, tick stubs, no margins).
TEMPLATE = go.layout.Template(pio.templates["plotly_white"])
TEMPLATE.layout.update(
    font={"family": "Arial, Helvetica, sans-serif", "color": "#222"}, paper_bgcolor="white", plot_bgcolor="white",
    xaxis={"automargin": True, "showgrid": False, "zeroline": False, "showline": False, "ticks": ""},
    yaxis={"automargin": True, "showgrid": False, "zeroline": False, "showline": False, "ticks": ""})
TITLE_FONT, SUBTITLE_FONT, TITLE_CHARS = 15, 11, 150  # px, px, characters per title line
BLOCK_LABELS = 28  # room above the plot for the labels of the model's blocks (``figures._mark_blocks``)


def title_lines(title: str, width: int = TITLE_CHARS) -> list[str]:
    """``title`` broken at its ' · ' separators into lines of at most ``width`` characters (a longer part keeps its
    own line)."""
    lines: list[str] = []
    for part in title.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += f" · {part}"
        else:
            lines.append(part)
    return lines


def titled(figure: go.Figure, title: str) -> go.Figure:
    """A copy of ``figure`` for export, laid out as on screen but on its own: the explicit ``TEMPLATE``, automatic
    margins, ``title`` (what the export shows: model, run, concept, scorer, seeds) as its one title, and under it only
    how to read the marks (the figure's ``meta["legend"]``; else its own title), at a fixed width so the export does
    not depend on the browser's window."""
    copy = go.Figure(figure)
    meta = copy.layout.meta if isinstance(copy.layout.meta, dict) else {}
    legend = meta.get("legend") or (copy.layout.title.text if copy.layout.title else None)
    lines = title_lines(title)
    top = 22 + len(lines) * (TITLE_FONT + 6) + (SUBTITLE_FONT + 10 if legend else 0) + BLOCK_LABELS
    margin = copy.layout.margin
    plot = max((copy.layout.height or MIN_HEIGHT) - (margin.t or 0), MIN_HEIGHT - top)
    title_layout = {"text": "<br>".join(html.escape(line, quote=False) for line in lines), "x": 0.01,
                    "xanchor": "left", "xref": "container", "yref": "container", "y": 1, "yanchor": "top",
                    "pad": {"t": 10}, "font": {"size": TITLE_FONT}}
    if legend:
        title_layout["subtitle"] = {"text": legend, "font": {"size": SUBTITLE_FONT, "color": "#555"}}
    copy.update_layout(template=TEMPLATE, title=title_layout, height=plot + top, width=EXPORT_WIDTH,
                       margin={"t": top, "l": max(margin.l or 0, 20), "r": max(margin.r or 0, 20),
                               "b": max(margin.b or 0, 30)})
    return copy


def static_export_problem() -> str | None:
    """Why figures cannot be exported as SVG, PNG or PDF on this host (kaleido missing, or no Chromium for it to
    drive), or None. HTML export needs neither."""
    try:
        import kaleido  # noqa: F401  (Plotly's static export engine)
        from choreographer.browsers.chromium import Chromium
    except ImportError:
        return "static export needs the kaleido package (pip install kaleido)"
    try:
        found = Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 - a best-effort search; any failure means none was found
        found = None
    if not found:
        return ("static export needs a Chromium or Chrome browser for kaleido (e.g. apt-get install chromium, or set "
                "BROWSER_PATH)")
    return None


def figure_bytes(figure: go.Figure, fmt: str, title: str) -> bytes:
    """``figure`` with ``title`` as a file: ``svg``, ``png`` or ``pdf`` (kaleido, ``static_export_problem`` must
    be None) or ``html`` (self-contained: plotly.js inside, opens offline).

    Raises:
        ValueError: an unknown format.
        RuntimeError: static export is not possible here (the reason).
    """
    figure = titled(figure, title)
    if fmt == "html":
        page = figure.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})
        return page.replace("<head>", f"<head>\n    <title>{html.escape(title)}</title>", 1).encode()
    if fmt not in STATIC:
        raise ValueError(f"unknown figure format {fmt!r}: one of {', '.join((*STATIC, 'html'))}")
    problem = static_export_problem()
    if problem:
        raise RuntimeError(problem)
    return figure.to_image(format=fmt, scale=PNG_SCALE if fmt == "png" else 1)


def csv_header(meta: dict) -> bytes:
    """The lines before an exported table's CSV: what it is about (``meta``: run, scorer, threshold, level,
    adjustment, ...), each line starting with '# ', the first saying how many lines to skip to read the table."""
    shown = {name: " ".join(str(value).split()) for name, value in meta.items() if value not in (None, "")}
    count = len(shown) + 1
    lines = [f"# LocoLab table: {count} lines of metadata, then the CSV "
             f"(pandas.read_csv(path, skiprows={count}))", *(f"# {name}: {value}" for name, value in shown.items())]
    return "".join(f"{line}\n" for line in lines).encode()


def table_csv(table, meta: dict | None = None) -> bytes:
    """A table (a pyarrow Table, or a list of row dicts) as CSV with a header row; with ``meta``, the ``csv_header``
    of what the numbers are about first."""
    head = csv_header(meta) if meta else b""
    if isinstance(table, pa.Table):
        buffer = io.BytesIO()
        pcsv.write_csv(table, buffer)
        return head + buffer.getvalue()
    rows = list(table)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns)
    writer.writeheader()
    writer.writerows(rows)
    return head + text.getvalue().encode()


@dataclass(frozen=True)
class SheetCell:
    """One image of a figure sheet: its bytes (None: not generated or unreadable) and the line under it."""

    image: bytes | None
    caption: str = ""


CELL, GAP, PAD, TEXT, TITLE_SIZE = 96, 6, 12, 13, 18
INK, PAPER, MISSING = (20, 20, 20), (255, 255, 255), (225, 225, 225)


# PIL's own default font (Aileron) has no "–", "≈", "▲" or "●": it draws a box for them. A subset of DejaVu Sans
# ships beside the dashboard (assets/DejaVuSans-LICENSE.txt says what it holds and under which licence).
FONT = Path(__file__).with_name("assets") / "DejaVuSans-subset.ttf"


@functools.cache
def _font(size: int):
    return ImageFont.truetype(str(FONT), size)


def _wrapped(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels (at word boundaries where possible)."""
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if draw.textlength(candidate, font=font) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    return [*lines, line] if line else lines


def _fitted(draw, text: str, font, width: int) -> str:
    """``text`` cut with '…' to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def figure_sheet(title: str, columns: list[str], rows: list[tuple[str, list[SheetCell]]], cell: int = CELL,
                 note: str = "") -> bytes:
    """The paper's kind of figure as one PNG: a title band, then a grid of images with a header per column (e.g.
    original, target, every window) and a label per row (e.g. one seed), each image with its caption (e.g. its
    score). Small images are scaled with nearest-neighbour so their pixels stay visible. The title (and ``note``)
    are also stored as PNG text (``Title``, ``Description``).

    Args:
        title: the title band's text (``title_text``); empty: no band.
        columns: the column headers.
        rows: (row label, one ``SheetCell`` per column).
        cell: the side of each image in pixels.
        note: a line under the title (e.g. the prompt), also stored as the PNG's description.
    """
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_font, title_font = _font(TEXT), _font(TITLE_SIZE)
    label_width = max([scratch.textlength(label, font=text_font) for label, _ in rows] + [40]) + PAD
    label_width = int(min(label_width, 3 * cell))
    width = int(PAD + label_width + len(columns) * (cell + GAP) - GAP + PAD)
    title_lines = _wrapped(scratch, title, title_font, width - 2 * PAD) if title else []
    note_lines = _wrapped(scratch, note, text_font, width - 2 * PAD) if note and title else []
    band = (PAD + len(title_lines) * (TITLE_SIZE + 6) + len(note_lines) * (TEXT + 5) + PAD) if title else 0
    header, caption = TEXT + 10, TEXT + 8
    height = band + PAD + header + len(rows) * (cell + caption + GAP) + PAD
    sheet = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(sheet)
    y = PAD
    for line in title_lines:
        draw.text((PAD, y), line, fill=INK, font=title_font)
        y += TITLE_SIZE + 6
    for line in note_lines:
        draw.text((PAD, y), line, fill=(90, 90, 90), font=text_font)
        y += TEXT + 5
    top = band + PAD
    left = PAD + label_width
    for j, name in enumerate(columns):
        draw.text((left + j * (cell + GAP), top), _fitted(draw, name, text_font, cell), fill=INK, font=text_font)
    for i, (label, cells) in enumerate(rows):
        y = top + header + i * (cell + caption + GAP)
        draw.text((PAD, y + cell // 2 - TEXT // 2), _fitted(draw, label, text_font, label_width - PAD), fill=INK,
                  font=text_font)
        for j, item in enumerate(cells[:len(columns)]):
            x = left + j * (cell + GAP)
            picture = scaled_picture(item.image, cell)
            if picture is None:
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=MISSING)
                draw.text((x + 4, y + cell // 2 - TEXT // 2), "missing", fill=(110, 110, 110), font=text_font)
            else:
                sheet.paste(picture, (x, y))
            if item.caption:
                draw.text((x, y + cell + 2), _fitted(draw, item.caption, text_font, cell), fill=(60, 60, 60),
                          font=text_font)
    info = PngImagePlugin.PngInfo()
    info.add_text(TITLE_KEY, title)
    if note:
        info.add_text("Description", note)
    info.add_text("Software", "LocoLab dashboard")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def scaled_picture(data: bytes | None, side: int) -> Image.Image | None:
    """An image scaled into a ``side`` square (nearest-neighbour when enlarged), or None if it does not decode."""
    if not data:
        return None
    try:
        picture = Image.open(io.BytesIO(data)).convert("RGB")
    except OSError:  # not an image (PIL's UnidentifiedImageError is an OSError)
        return None
    if max(picture.size) > side:
        picture.thumbnail((side, side))
        return picture
    factor = side / max(picture.size)
    return picture.resize((max(1, round(picture.width * factor)), max(1, round(picture.height * factor))),
                          Image.Resampling.NEAREST)


def edit_zip(record: dict, evaluation: dict | None, pairs: list[dict], files: dict[str, bytes],
             missing: list[str] = ()) -> bytes:
    """One edit as a zip: its record (``contract.names.EDIT_RECORD``), its weights and other files (``files``:
    root-relative path -> bytes, kept under the same paths), the evaluation's summary (``EDIT_SUMMARY``),
    ``scores.csv`` (every
    before/after pair with both scores and image paths) and a ``README.txt`` saying what is inside and what could
    not be read (``missing``).

    Args:
        record: the edit's record (evaluations attached by ``edit_records.read_edits`` are left out).
        evaluation: the evaluation shown (its summary), or None.
        pairs: ``queries.edit_pairs`` rows of that evaluation.
        files: the edit's folder files and the evaluation's images, by root-relative path.
        missing: root-relative paths that could not be read.
    """
    plain = {key: value for key, value in record.items() if key not in ("eval", "evals")}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(EDIT_RECORD, json.dumps(plain, indent=2, default=str))
        if evaluation:
            archive.writestr(EDIT_SUMMARY, json.dumps(evaluation, indent=2, default=str))
        archive.writestr("scores.csv", table_csv(pairs) if pairs else b"")
        for path, data in sorted(files.items()):
            archive.writestr(path, data, zipfile.ZIP_STORED if path.endswith((".png", ".safetensors"))
                             else zipfile.ZIP_DEFLATED)
        lines = [f"LocoLab edit {plain.get('edit_id')}: {plain.get('method')} edit of {plain.get('family')} / "
                 f"{plain.get('concept')} on {plain.get('model')}",
                 f"{EDIT_RECORD}: the edit's record; {EDIT_SUMMARY}: the evaluation's summary; scores.csv: every "
                 "before/after pair (prompt group, prompt, seed, scores, image paths)",
                 f"evaluation: {evaluation.get('eval_id') if evaluation else 'none'}",
                 f"files: {len(files)} ({', '.join(sorted(files)[:5])}{', ...' if len(files) > 5 else ''})"]
        if missing:
            lines.append(f"not readable, left out ({len(missing)}): {', '.join(missing[:20])}")
        archive.writestr("README.txt", "\n".join(lines) + "\n")
    return buffer.getvalue()
