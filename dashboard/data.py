"""Cached read access to an artifact root: one DuckDB connection per state of the root's files, and query results
cached per state, so new Parquet parts (or edits) show up on the next rerun and nothing unchanged is read twice.

A state is a fingerprint of the file names, sizes and modification times under ``tables/`` and ``edits/``.
"""

import hashlib
import os
import threading
from dataclasses import dataclass, field

import duckdb
import streamlit as st

from contract.errors import UserError
from contract.store import TMP_PREFIX, Store
from dashboard import edits, queries


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
        edits: stored edit records (``edits.read_edits``).
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
    """A digest of (path, size, mtime) of every finished file under ``root/tables`` and ``root/edits``."""
    digest = hashlib.sha1()
    for top in ("tables", "edits"):
        for parent, directories, names in os.walk(os.path.join(root, top)):
            directories.sort()
            for name in sorted(names):
                if name.startswith(TMP_PREFIX):
                    continue
                try:
                    stat = os.stat(os.path.join(parent, name))
                except FileNotFoundError:  # replaced while we looked: the next rerun sees its successor
                    continue
                digest.update(f"{parent}/{name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@st.cache_resource(max_entries=4, show_spinner=False)
def _open(root: str, fingerprint: str) -> Snapshot:
    store = Store(root)
    records, bad_records = edits.read_edits(root)
    try:
        con = store.connect()
    except (UserError, duckdb.Error) as error:
        return Snapshot(root, fingerprint, None, store.skipped + bad_records, str(error))
    return Snapshot(root, fingerprint, con, store.skipped + bad_records, edits=records)


def snapshot(root: str) -> Snapshot:
    """The root's current snapshot (opened once per state of its files)."""
    return _open(root, fingerprint(root))


@st.cache_data(max_entries=256, show_spinner=False)
def _query(root: str, fingerprint: str, name: str, args: tuple):
    snap = _open(root, fingerprint)
    with snap.lock:
        return getattr(queries, name)(snap.con, *args)


def query(snap: Snapshot, function, *args):
    """``function(snap.con, *args)`` for a function of ``queries``, cached per snapshot and arguments."""
    return _query(snap.root, snap.fingerprint, function.__name__, args)
