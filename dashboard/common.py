"""What every page shares: the root in use, its snapshot, the warnings about it, and image cells."""

import os
from datetime import UTC, datetime

import pyarrow as pa
import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.store import is_url
from locolab.dashboard import data
from locolab.dashboard.files import OutsideRoot
from locolab.dashboard.gallery_grid import enlarged

ROOT_KEY, SOURCE_KEY, OPTIONS_KEY = "artifact_root", "artifact_root_source", "launch_options"
MAX_NAMED = 20  # skipped files named in the warning
TABLE_PAGE = 50  # rows of a table shown at once; longer tables page


# What Markdown and Streamlit would read as markup anywhere in a line: emphasis, code, links and images, HTML and
# autolinks, LaTeX, strikethrough, tables, and Streamlit's directives (``:red[...]``, ``:material/...:``) ...
_MARKUP = frozenset("\\`*_[]<>$~|!:")
# ... and at the start of a line: headings, lists, block quotes, rules.
_BLOCK_START = frozenset("#+-=")


def escape(text) -> str:
    """``text`` (typed by someone, or read from the store) shown literally in ``st.markdown``, captions and
    messages: what Markdown would read as markup is escaped, and line breaks become spaces."""
    line = "".join(f"\\{char}" if char in _MARKUP else char for char in " ".join(str(text).split()))
    if line[:1] in _BLOCK_START:
        return f"\\{line}"
    digits = len(line) - len(line.lstrip("0123456789"))
    return f"{line[:digits]}\\{line[digits:]}" if digits and line[digits:digits + 1] in (".", ")") else line


def code(text) -> str:
    """``text`` as an inline code span, shown literally whatever it holds (the fence is longer than any run of
    backticks inside), for paths and file names."""
    line = " ".join(str(text).split())
    runs = "".join(char if char == "`" else " " for char in line).split()
    fence = "`" * (max(map(len, runs), default=0) + 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def bounded(options: list, what: str, limit: int = bounds.MAX_OPTIONS) -> list:
    """At most ``limit`` of ``options`` (a picker of stored values, which can be crafted in any number), with a
    note when some are left out."""
    if len(options) <= limit:
        return options
    st.caption(f"Showing the first {limit:,} of {len(options):,} {what}.")
    return options[:limit]


def root() -> str:
    """The artifact root chosen in ``main``."""
    return st.session_state[ROOT_KEY]


def snapshot() -> data.Snapshot:
    return data.snapshot(root())


def shown_path(path: str, root: str) -> str:
    """A file of the root as a path relative to it (a URL root's files: the part after the root's URL)."""
    if is_url(root):
        return path[len(root.rstrip("/")) + 1:] if path.startswith(root.rstrip("/") + "/") else path
    return os.path.relpath(path, root)


def shown_root(path: str) -> str:
    """The root as a person reads it: an absolute folder, or the URL as given."""
    return path if is_url(path) else os.path.abspath(path)


def show_problems(snap: data.Snapshot) -> None:
    """A warning naming every skipped file; an error (and the page stops) when the root cannot be read."""
    if snap.skipped:
        names = "\n".join(f"- {code(shown_path(path, snap.root))}: {escape(reason)}"
                           for path, reason in snap.skipped[:MAX_NAMED])
        if len(snap.skipped) > MAX_NAMED:
            names += f"\n- and {len(snap.skipped) - MAX_NAMED} more"
        st.warning(f"Skipped {len(snap.skipped)} unreadable or foreign file(s):\n{names}")
    if snap.error:
        st.error(escape(snap.error))
        st.stop()


def require_results(snap: data.Snapshot) -> None:
    """Explain how to produce results, and stop the page, when the root holds no sweep results."""
    if not data.query(snap, queries.models):
        explain_empty(snap.root)
        st.stop()


def explain_empty(path: str) -> None:
    st.info(f"No sweep results in {code(shown_root(path))} yet. Produce some, then reload this page:")
    st.code("make demo                                            # tiny built-in model, a minute on a CPU\n"
            "make sweep CONFIG=compute/configs/tiny-sd1.yaml      # any sweep config\n"
            f"python -m compute sweep compute/configs/tiny-sd1.yaml --artifacts {path}", language="bash")


def image(relpath: str | None, caption: str) -> None:
    """One image from the root (never from outside it; an object store's through fsspec, cached), or a note saying
    why it is missing."""
    if not relpath:
        st.caption(f"{escape(caption)}\n\n(no image)")
        return
    try:
        st.image(_sharp(data.image_bytes(snapshot(), relpath)), caption=caption, width="stretch")
    except OutsideRoot:
        st.caption(f"{escape(caption)}\n\n(no image: path leaves the artifact root)")
    except OSError:  # missing, unreadable, or not an image (PIL's UnidentifiedImageError is an OSError)
        st.caption(f"{escape(caption)}\n\n(image missing or unreadable)")


@st.cache_data(max_entries=1024, show_spinner=False)
def _sharp(image: bytes) -> bytes:
    # A small image enlarged with whole pixels (gallery_grid.enlarged), so the browser never blurs it.
    return enlarged(image)


def score_text(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def when(value) -> str:
    """A timestamp (datetime, ISO text, or None) in the one format every page shows: '2026-12-02 01:23 UTC'."""
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:  # the store writes UTC; naive values are UTC too
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def with_times(table: pa.Table, columns: tuple[str, ...] = ("created_at", "finished_at")) -> pa.Table:
    """``table`` with its timestamp ``columns`` as ``when`` text."""
    for name in columns:
        if name in table.column_names:
            index = table.column_names.index(name)
            table = table.set_column(index, name, pa.array([when(v) for v in table[name].to_pylist()], pa.string()))
    return table


def table(rows, key: str, column_config: dict | None = None, static: bool = False) -> None:
    """A table with every row on the page (no inner scrolling that hides rows), paged ``TABLE_PAGE`` rows at a time
    when longer.

    Args:
        rows: a list of dicts or a pyarrow Table.
        key: the pager's widget key.
        column_config: passed to ``st.dataframe``.
        static: a plain HTML table (``st.table``: no sorting, nothing to load) instead of the data grid, for short
            tables of text on pages whose first render counts (the grid's script is the largest a page loads).
    """
    count = rows.num_rows if isinstance(rows, pa.Table) else len(rows)
    shown = rows
    if count > TABLE_PAGE:
        pages = -(-count // TABLE_PAGE)
        page = st.pagination(pages, key=key)
        first = (page - 1) * TABLE_PAGE
        shown = rows.slice(first, TABLE_PAGE) if isinstance(rows, pa.Table) else rows[first:first + TABLE_PAGE]
        st.caption(f"Rows {first + 1:,}–{min(first + TABLE_PAGE, count):,} of {count:,}.")
    if static:
        st.table(shown, hide_index=True, border="horizontal")
    else:
        st.dataframe(shown, hide_index=True, width="stretch", height="content", column_config=column_config)
