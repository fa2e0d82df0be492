"""The pages' download buttons, one call per figure, table, image strip or edit (``dashboard.exports`` makes the
files). Files are made only when a button is clicked (Streamlit runs the callable then), so a page renders as fast
with the buttons as without."""

import functools

import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.figures import row_label
from locolab.contract.names import EDIT_EVALS, EDITS_DIR, eval_folder
from locolab.contract.notation import window_label
from locolab.dashboard import common, data, exports
from locolab.dashboard.files import RootFiles


def figure(figure: dict, title: str, name: str, key: str) -> None:
    """Download buttons for one figure (a Vega-Lite specification, ``contract.figures``), titled ``title``: SVG, PNG
    and PDF (vl-convert, on any host) and interactive HTML that opens offline.

    Args:
        figure: the figure as the page draws it.
        title: ``exports.title_text`` of what it shows (model, run, concept, scorer, seeds).
        name: the file name stem.
        key: a key unique on the page.
    """
    # The title is in the popover's help, not in a caption, so the page's own captions keep their places.
    shown = common.escape(title)  # store text (concepts, runs) shown literally
    with st.popover("Download figure", icon=":material/download:", help=f"Titled: {shown}"):
        for fmt in (*exports.STATIC, "html"):
            st.download_button(fmt.upper(), functools.partial(exports.figure_bytes, figure, fmt, title),
                               file_name=f"{exports.file_stem(name)}.{fmt}", mime=exports.MIME[fmt],
                               key=f"{key}_{fmt}", on_click="ignore",
                               help=f"Titled: {shown}" if fmt != "html" else f"Interactive, opens offline. Titled: "
                                                                             f"{shown}")


def table(rows, name: str, key: str, label: str = "Download table (CSV)", meta: dict | None = None) -> None:
    """A CSV download of a table (a pyarrow Table or row dicts) exactly as shown, headed by ``meta`` (what its numbers
    are about: run, scorer, threshold, level, adjustment; ``exports.csv_header``)."""
    st.download_button(label, functools.partial(exports.table_csv, rows, meta),
                       file_name=f"{exports.file_stem(name)}.csv", mime=exports.MIME["csv"], key=key,
                       on_click="ignore", icon=":material/download:",
                       help="The first lines (starting with #) say what the numbers are about and how many lines to "
                            "skip to read the table." if meta else None)


def _sheet(root: str, title: str, note: str, columns: list[str], rows: list[tuple[str, list[tuple[str | None, str]]]]
           ) -> bytes:
    files = RootFiles(root)

    def read(relpath):
        try:
            return files.read(relpath) if relpath else None
        except OSError:
            return None

    cells = [(label, [exports.SheetCell(read(path), caption) for path, caption in row]) for label, row in rows]
    return exports.figure_sheet(title, columns, cells, note=note)


def sheet(root: str, title: str, note: str, columns: list[str], rows: list[tuple[str, list[tuple[str | None, str]]]],
          name: str, key: str) -> None:
    """A figure-sheet PNG download (``exports.figure_sheet``): ``rows`` hold (row label, [(image path under
    ``root``, caption) per column])."""
    st.download_button("Download figure sheet (PNG)", functools.partial(_sheet, root, title, note, columns, rows),
                       file_name=f"{exports.file_stem(name)}.png", mime=exports.MIME["png"], key=key,
                       on_click="ignore", icon=":material/download:",
                       help="Original, target and every window of this concept at this m, one row per seed, with the "
                            "title naming model, run, concept, scorer and seeds.")


def edit_archive(root: str, record: dict, evaluation: dict | None, pairs: list[dict]) -> bytes:
    """The zip of one edit (``exports.edit_zip``): its folder's files (record, weights) without other evaluations,
    and the shown evaluation's summary and images."""
    files = RootFiles(root)
    edit_id = record["edit_id"]
    eval_id = evaluation.get("eval_id") if evaluation else None
    wanted = [path for path in files.files_under(f"{EDITS_DIR}/{edit_id}")
              if not path.startswith(f"{EDITS_DIR}/{edit_id}/{EDIT_EVALS}/")]
    if evaluation:
        wanted += files.files_under(eval_folder(edit_id, eval_id)) if eval_id else []
    wanted += [row[side] for row in pairs for side in ("before_image", "after_image") if row.get(side)]
    found, missing = {}, []
    for path in dict.fromkeys(wanted):
        try:
            found[path] = files.read(path)
        except OSError:
            missing.append(path)
    return exports.edit_zip(record, evaluation, pairs, found, missing)


def edit(root: str, record: dict, evaluation: dict | None, pairs: list[dict], key: str) -> None:
    """A zip download of one edit with the evaluation shown."""
    which = evaluation.get("eval_id") if evaluation else None
    st.download_button("Download edit (zip: record, weights, evaluation images and scores)",
                       functools.partial(edit_archive, root, record, evaluation, pairs),
                       file_name=f"{exports.file_stem(record['edit_id'], which)}.zip", mime=exports.MIME["zip"],
                       key=key, on_click="ignore", icon=":material/download:")


def concept_sheet(snap, cases: list[dict], model: str, scorer: str | None, family: str, concept: str, size: int,
                  prompt: str) -> None:
    """The figure-sheet download of one concept at window size m for one prompt: original, target and every window
    as columns, one row per seed, each image with its score (``cases``: the gallery's rows of that prompt)."""
    seeds = sorted({case["seed"] for case in cases})[:bounds.MAX_SEEDS]
    starts = sorted({case["window_start"] for case in cases
                     if case["kind"] == "window" and 0 <= case["window_start"] < bounds.MAX_LAYERS})
    columns = [("original", None), ("target", None), *((window_label(start, size), start) for start in starts)]
    by_cell = {(case["kind"] if case["kind"] != "window" else case["window_start"], case["seed"]): case
               for case in cases}
    rows = []
    for seed in seeds:
        row = []
        for name, start in columns:
            case = by_cell.get((name if start is None else start, seed))
            row.append((case and case["image_path"], "" if case is None else
                        f"{'–' if case['score'] is None else format(case['score'], '.3f')}"))
        rows.append((f"seed {seed}", row))
    runs = data.query(snap, queries.case_runs, model, family, concept)
    title = exports.title_text("LocoGen images per window", model=model, run=", ".join(runs[:3]) + (
        f" (+{len(runs) - 3})" if len(runs) > 3 else ""), concept=row_label(family, concept), scorer=scorer,
        seeds=seeds, m=size)
    target = next((case["target"] for case in cases if case.get("target")), None)
    note = f"prompt “{prompt}” · target prompt “{target}” · under each image its score ({scorer})"
    sheet(snap.root, title, note, [name for name, _ in columns], rows,
          f"{model}-{family}-{concept}-m{size}-sheet", key="gallery_sheet")


PAPER_COLUMNS = ["original", "target", "minimal window"]


def minimal_strip(cases: list[dict], window: dict, files: RootFiles) -> tuple[str, list[exports.SheetCell]]:
    """One concept's row of the paper figure: its original, target and minimal-window images for its first prompt
    and seed (``cases``: the gallery's rows at the window's size; ``window``: its ``minimal_windows`` row), each with
    its score."""
    label = "\n".join((row_label(window["family"], window["concept"]),
                       window_label(window["window_start"], window["window_size"])))
    chosen = [case for case in cases if case["kind"] == "window" and case["window_start"] == window["window_start"]]
    if not chosen:
        return label, [exports.SheetCell(None) for _ in PAPER_COLUMNS]
    prompt, seed = min((case["prompt"], case["seed"]) for case in chosen)
    by_kind = {case["kind"]: case for case in cases if (case["prompt"], case["seed"]) == (prompt, seed)
               and (case["kind"] != "window" or case["window_start"] == window["window_start"])}

    def cell(kind: str) -> exports.SheetCell:
        case = by_kind.get(kind)
        if case is None:
            return exports.SheetCell(None)
        try:
            image = files.read(case["image_path"]) if case["image_path"] else None
        except OSError:
            image = None
        return exports.SheetCell(image, "–" if case["score"] is None else f"score {case['score']:.3f}")

    return label, [cell("original"), cell("target"), cell("window")]


def paper_bytes(snap, model: str, scorer: str, heat, minimal, verdicts: list[dict], family: str, title: str,
                fmt: str) -> bytes:
    """The paper figure of ``family`` (``paper_figure.paper_figure``) as ``fmt``: ``heat(family)`` draws its heat map,
    ``minimal`` (``queries.minimal_windows``) gives each concept's window whose images it shows."""
    from locolab.dashboard.paper_figure import paper_figure

    files = RootFiles(snap.root)
    strips = [minimal_strip(data.query(snap, queries.gallery, model, scorer, family, window["concept"],
                                       window["window_size"]).to_pylist(), window, files)
              for window in minimal.to_pylist() if window["family"] == family]
    figure = paper_figure(heat(family), PAPER_COLUMNS, strips, [row for row in verdicts if row["family"] == family])
    return exports.figure_bytes(figure, fmt, title)


def paper(snap, model: str, scorer: str, heat, minimal, verdicts: list[dict], title, name: str) -> None:
    """The paper-figure download of one concept family (PDF or SVG): its heat map, each concept's images at its
    minimal localizing window and the verdict table (``title(family)``: the export's title)."""
    families = list(dict.fromkeys(row["family"] for row in verdicts))
    with st.popover("Paper figure (PDF, SVG)", icon=":material/download:",
                    help="One concept family in one file: its heat map, each concept's original, target and minimal-"
                         "window images (first prompt and seed) and the verdicts in full."):
        family = st.selectbox("Family", families, key="paper_family")
        for fmt in ("pdf", "svg"):
            st.download_button(fmt.upper(), functools.partial(paper_bytes, snap, model, scorer, heat, minimal, verdicts,
                                                              family, title(family), fmt),
                               file_name=f"{exports.file_stem(name, family, 'paper')}.{fmt}", mime=exports.MIME[fmt],
                               key=f"paper_{fmt}", on_click="ignore")
