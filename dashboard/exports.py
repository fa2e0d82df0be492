"""What the dashboard lets a researcher take away, each self-describing: figures (Vega-Lite specifications,
``contract.figures``) as SVG, PNG or PDF through vl-convert (no browser needed) or as interactive HTML that opens
offline, the figure sheet of one concept's images (PIL), tables as CSV, and an edit as a zip.

Every export carries a title naming what it shows: the model, the run, the concept, the scorer and the seeds.
Torch-free and Streamlit-free; the pages' buttons are in ``dashboard.downloads``.

Usage: ``figure_bytes(spec, "svg", title_text("LocoGen heat map", model="toyworld", run="r1", scorer="clip"))``
"""

import copy
import csv
import functools
import html
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import vl_convert
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from locolab.contract.names import EDIT_RECORD, EDIT_SUMMARY

STATIC = ("svg", "png", "pdf")
MIME = {"svg": "image/svg+xml", "png": "image/png", "pdf": "application/pdf", "html": "text/html",
        "csv": "text/csv", "zip": "application/zip"}
# The plot area's width in a static export (the labels, the colour legend and the title add to it; PNG at twice the
# pixels for print).
EXPORT_WIDTH, PNG_SCALE = 900, 2
TITLE_KEY = "Title"  # the PNG text chunk that carries a figure sheet's title
# PIL's own default font (Aileron) has no "–", "≈", "▲" or "●": it draws a box for them. A subset of DejaVu Sans
# ships beside the dashboard (assets/DejaVuSans-LICENSE.txt says what it holds and under which licence); the figure
# sheets draw with it and vl-convert's exports name it.
FONT = Path(__file__).with_name("assets") / "DejaVuSans-subset.ttf"
FONT_FAMILY = "DejaVu Sans"


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


TITLE_FONT, SUBTITLE_FONT, TITLE_CHARS = 15, 11, 150  # px, px, characters per title line


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


def titled(spec: dict, title: str) -> dict:
    """A copy of ``spec`` for export, laid out as on screen but on its own: ``title`` (what the export shows: model,
    run, concept, scorer, seeds) as its one title, under it only how to read the marks (the last line of the
    figure's subtitle, ``contract.figures._title``; else its own title), the shipped font, and the plot
    ``EXPORT_WIDTH`` wide so the export does not depend on the browser's window. (Vega sizes the canvas to hold every
    label.)"""
    out = copy.deepcopy(spec)
    own = out.get("title") if isinstance(out.get("title"), dict) else {"text": out.get("title")}
    subtitle = own.get("subtitle")
    legend = (subtitle if isinstance(subtitle, str) else subtitle[-1]) if subtitle else own.get("text")
    out["title"] = {"text": title_lines(title), "anchor": "start", "fontSize": TITLE_FONT, "offset": 22,
                    **({"subtitle": legend, "subtitleFontSize": SUBTITLE_FONT, "subtitleColor": "#555"}
                       if legend else {})}
    if "vconcat" not in out:
        out["width"] = EXPORT_WIDTH
    out["background"] = "white"
    out["padding"] = 12
    out.setdefault("config", {})["font"] = FONT_FAMILY
    return out


@functools.cache
def _fonts() -> None:
    """Registers the shipped font with vl-convert, once per process."""
    vl_convert.register_font_directory(str(FONT.parent))


def figure_bytes(spec: dict, fmt: str, title: str) -> bytes:
    """``spec`` (a Vega-Lite figure) with ``title`` as a file: ``svg``, ``png`` or ``pdf`` (vl-convert) or ``html``
    (self-contained: Vega's JavaScript inside, opens offline).

    Raises:
        ValueError: an unknown format.
    """
    if fmt not in (*STATIC, "html"):
        raise ValueError(f"unknown figure format {fmt!r}: one of {', '.join((*STATIC, 'html'))}")
    _fonts()
    spec = titled(spec, title)
    if fmt == "html":
        page = vl_convert.vegalite_to_html(spec, bundle=True)
        return page.replace("<head>", f"<head>\n    <title>{html.escape(title)}</title>", 1).encode()
    if fmt == "svg":
        return vl_convert.vegalite_to_svg(spec).encode()
    if fmt == "png":
        return vl_convert.vegalite_to_png(spec, scale=PNG_SCALE)
    return vl_convert.vegalite_to_pdf(spec)


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
