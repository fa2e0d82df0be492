"""Cached read access to an artifact root: one DuckDB connection per state of the root's files, and query results
cached per state, so new Parquet parts (or edits) show up on the next rerun and nothing unchanged is read twice.

A state is a fingerprint of the file names, sizes and modification times under ``tables/`` and ``edits/``. The root
is a local folder or an object store (an fsspec URL: each Parquet part is read whole through fsspec once per version
and handed to DuckDB, ``contract.store.Store``; images are read through fsspec and cached here).
"""

import threading
from dataclasses import dataclass, field

import duckdb
import streamlit as st

from locolab.contract import queries
from locolab.contract.errors import UserError
from locolab.contract.store import Store, is_url
from locolab.dashboard import edit_records, files


@dataclass
class Snapshot:
    """The root as it was at one fingerprint.

    Attributes:
        root: the artifact root.
        fingerprint: the state of its files.
        con: DuckDB connection with the store's views (runs, cases, scores, layers, edit_scores); None when
            ``error``.
        skipped: (path, reason) of each corrupt or foreign file left out.
        error: why the root cannot be read (e.g. written by a newer LocoLab), or None.
        edits: stored edit records (``edit_records.read_edits``).
    """

    root: str
    fingerprint: str
    con: duckdb.DuckDBPyConnection | None
    skipped: list[tuple[str, str]]
    error: str | None = None
    edits: list[dict] = field(default_factory=list)
    # One connection serves every browser session; DuckDB connections must not be used by two threads at once.
    lock: threading.Lock = field(default_factory=threading.Lock)


def fingerprint(root: str) -> str:
    """A digest of (path, size, mtime) of every finished file under ``root/tables`` and ``root/edits`` (a local
    folder or an object store, ``files.RootFiles.fingerprint``)."""
    return files.RootFiles(root).fingerprint()


@st.cache_resource(max_entries=4, show_spinner=False)
def _open(root: str, fingerprint: str) -> Snapshot:
    store = Store(root)
    records, bad_records = edit_records.read_edits(root)
    try:
        con = store.connect()
    except (UserError, duckdb.Error) as error:
        return Snapshot(root, fingerprint, None, store.skipped + bad_records, str(error))
    return Snapshot(root, fingerprint, con, store.skipped + bad_records, edits=records)


# An object store is listed at most this often (every rerun would list the bucket): its new parts show up within it.
REMOTE_LISTING_S = 10


@st.cache_data(ttl=REMOTE_LISTING_S, max_entries=16, show_spinner=False)
def _remote_fingerprint(root: str) -> str:
    return fingerprint(root)


def snapshot(root: str) -> Snapshot:
    """The root's current snapshot (opened once per state of its files; an object store's state is listed at most
    every ``REMOTE_LISTING_S`` seconds)."""
    return _open(root, _remote_fingerprint(root) if is_url(root) else fingerprint(root))


@st.cache_data(max_entries=256, show_spinner=False)
def _query(root: str, fingerprint: str, name: str, args: tuple):
    snap = _open(root, fingerprint)
    with snap.lock:
        return getattr(queries, name)(snap.con, *args)


def query(snap: Snapshot, function, *args):
    """``function(snap.con, *args)`` for a function of ``queries``, cached per snapshot and arguments."""
    return _query(snap.root, snap.fingerprint, function.__name__, args)


@st.cache_data(max_entries=1024, show_spinner=False)
def _image(root: str, fingerprint: str, relpath: str) -> bytes:
    return files.RootFiles(root).read(relpath)


def image_bytes(snap: Snapshot, relpath: str) -> bytes:
    """The bytes of one image of the root: read directly from a local folder, and through fsspec, cached per state of
    the root, from an object store (images are written once under content-derived names).

    Raises:
        OSError: missing, unreadable, or the path leaves the root.
    """
    if not is_url(snap.root):
        return files.RootFiles(snap.root).read(relpath)
    return _image(snap.root, snap.fingerprint, relpath)
