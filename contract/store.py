"""The artifact store: versioned Parquet tables and PNG images under one root, read back through DuckDB.

Layout under the root (default ``artifacts/``, or ``$LOCOLAB_ARTIFACTS``; a local path or an fsspec URL)::

    tables/runs/part-<part>.parquet
    tables/cases/model=<m>/family=<f>/part-<part>.parquet
    tables/scores/model=<m>/family=<f>/part-<part>.parquet
    tables/contributions/model=<m>/family=<f>/part-<part>.parquet  (attention contribution: each site's measure)
    tables/layers/part-<run_id>.parquet        (the run's sites, e.g. cross-attention layers, for labels and hover text)
    tables/edit_scores/part-<edit_id>-<eval_id>.parquet  (an edit's evaluation with one set of settings: CLIP
                                               scores before/after, per prompt group)
    tables/localization_benchmark/part-<benchmark_id>.parquet  (methods scored against planted knowledge:
                                               ``contract.planted``)
    images/<model>/<image_key>.png             (cases.image_path holds this path, relative to the root)

``<part>`` is the writer's choice: ``<run_id>-<shard>`` for runs, and for cases and scores the sweep's work-unit id,
which is derived from the unit's cases, so a rerun of a unit replaces its files and shards never write the same
one. Partition values are URL-quoted. Every file appears whole or not at all: on a filesystem it is written under a
``.tmp-`` name and renamed into place (readers skip ``.tmp-`` names); on an object store, which cannot rename, it is
written as the final object in one request (``atomic_write``).

This module must not import torch: the dashboard imports it. The summaries over these tables (localization,
minimal windows, tracing effects) live in ``contract.summaries``.
"""

import contextlib
import io
import os
import socket
import tempfile
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from functools import reduce
from pathlib import Path
from typing import BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from locolab.contract import planted
from locolab.contract.errors import UserError

# v2: edit_scores.eval_id; an edit may have several evaluations, which a v1 reader would mix into one.
# v3: no column means one thing for one method and another for the next: causal tracing's restored site is in
# ``site`` (was ``window_start``, with ``window_size`` 1), a top-k intervention's k is the length of ``blocks`` (was
# ``window_size``), and attention contributions have their own table (were ``scores`` rows under a scorer id that
# named no scorer). ``window_start``/``window_size`` are LocoGen's windows only.
SCHEMA_VERSION = 3
# Rows of these methods in files written before v3 stored their sites in LocoGen's columns (``outdated``).
SITE_METHODS_BEFORE_V3 = ("trace-unet", "trace-text", "attention-contribution")
ROOT_ENV = "LOCOLAB_ARTIFACTS"
DEFAULT_ROOT = "artifacts"
TMP_PREFIX = ".tmp-"

_TEXT, _INT, _FLOAT = pa.string(), pa.int32(), pa.float64()
_TIME = pa.timestamp("us", tz="UTC")

# The one definition of the artifact schema. Add columns at the end; readers union files by column name, so older
# files read back with NULL in new columns. Bump SCHEMA_VERSION when a change would mislead an older reader.
SCHEMAS: dict[str, pa.Schema] = {
    "runs": pa.schema([
        ("schema_version", _INT), ("run_id", _TEXT), ("config_name", _TEXT), ("config_json", _TEXT),
        ("model", _TEXT), ("created_at", _TIME), ("finished_at", _TIME), ("status", _TEXT), ("git_commit", _TEXT),
        ("host", _TEXT), ("versions_json", _TEXT), ("timings_json", _TEXT), ("shard", _INT), ("num_shards", _INT),
        ("method", _TEXT), ("scheduler", _TEXT), ("reference", _TEXT),
    ]),
    "cases": pa.schema([
        ("schema_version", _INT), ("case_id", _TEXT), ("run_id", _TEXT), ("model", _TEXT), ("family", _TEXT),
        ("concept", _TEXT), ("prompt", _TEXT), ("target", _TEXT), ("kind", _TEXT), ("window_start", _INT),
        ("window_size", _INT), ("seed", pa.int64()), ("image_path", _TEXT), ("steps", _INT), ("guidance", _FLOAT),
        ("height", _INT), ("width", _INT), ("method", _TEXT), ("component", _TEXT), ("noise", _FLOAT),
        ("blocks", pa.list_(_INT)), ("site", _INT),
    ]),
    "scores": pa.schema([
        ("schema_version", _INT), ("case_id", _TEXT), ("run_id", _TEXT), ("model", _TEXT), ("family", _TEXT),
        ("concept", _TEXT), ("kind", _TEXT), ("window_start", _INT), ("window_size", _INT), ("seed", pa.int64()),
        ("scorer_id", _TEXT), ("score_text", _TEXT), ("score", _FLOAT), ("method", _TEXT), ("component", _TEXT),
        ("noise", _FLOAT), ("blocks", pa.list_(_INT)), ("site", _INT),
    ]),
    "contributions": pa.schema([
        ("schema_version", _INT), ("case_id", _TEXT), ("run_id", _TEXT), ("model", _TEXT), ("family", _TEXT),
        ("concept", _TEXT), ("seed", pa.int64()), ("component", _TEXT), ("site", _INT), ("contribution", _FLOAT),
    ]),
    "edit_scores": pa.schema([
        ("schema_version", _INT), ("edit_id", _TEXT), ("model", _TEXT), ("family", _TEXT), ("concept", _TEXT),
        ("method", _TEXT), ("group", _TEXT), ("prompt", _TEXT), ("seed", pa.int64()), ("phase", _TEXT),
        ("scorer_id", _TEXT), ("score_text", _TEXT), ("score", _FLOAT), ("image_path", _TEXT), ("steps", _INT),
        ("guidance", _FLOAT), ("height", _INT), ("width", _INT), ("eval_id", _TEXT),
        # The evaluation battery (compute/edit/battery.py): every detector's label ({attribute: label}, JSON), and on
        # "after" rows the distance to the same prompt and seed's image before the edit.
        ("detected", _TEXT), ("clip_distance", _FLOAT), ("ssim", _FLOAT), ("psnr", _FLOAT),
    ]),
    "layers": pa.schema([
        ("schema_version", _INT), ("run_id", _TEXT), ("model", _TEXT), ("index", _INT), ("path", _TEXT),
        ("block", _TEXT), ("resolution", _INT), ("heads", _INT), ("query_dim", _INT), ("text_dim", _INT),
        ("inner_dim", _INT), ("component", _TEXT),
    ]),
    # One benchmark run (``locolab benchmark-localization``): a row per (model, method, family), ``contract.planted``.
    "localization_benchmark": pa.schema([("schema_version", _INT), ("benchmark_id", _TEXT), *planted.SCHEMA,
                                         ("seeds", pa.list_(pa.int64())), ("created_at", _TIME),
                                         ("scorer", _TEXT)]),
}
PARTITIONS: dict[str, tuple[str, ...]] = {"runs": (), "cases": ("model", "family"), "scores": ("model", "family"),
                                          "contributions": ("model", "family"), "edit_scores": (), "layers": (),
                                          "localization_benchmark": ()}


def resolve_root(root: str | os.PathLike | None = None) -> str:
    """The artifact root: ``root`` if given, else ``$LOCOLAB_ARTIFACTS``, else ``artifacts``."""
    return os.fspath(root) if root is not None else os.environ.get(ROOT_ENV, DEFAULT_ROOT)


def join(root: str | os.PathLike, relpath: str) -> str:
    """The full path or URL of ``relpath`` (a '/'-separated path such as ``cases.image_path``) under ``root``."""
    return f"{os.fspath(root).rstrip('/')}/{relpath}"


def image_relpath(model: str, image_key: str) -> str:
    """Where an image lives, relative to the root (the value stored in ``cases.image_path``)."""
    return f"images/{urllib.parse.quote(model, safe='')}/{image_key}.png"


# fsspec protocols of object stores: no rename (a "move" is a copy and a delete), but a single PUT, or a multipart
# upload, makes the whole object appear at once.
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl"})


def url_fs(url: str):
    """(filesystem, path) for an fsspec URL, or a UserError naming the package to install.

    Directory listings are not cached: other processes (another shard, a dashboard's job) write the same root, and
    a cached listing would hide their files from this one (s3fs caches ``ls`` and ``exists`` answers otherwise).
    """
    try:
        import fsspec
        return fsspec.core.url_to_fs(url, use_listings_cache=False)
    except ImportError as error:
        package = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}.get(url.split("://")[0], "fsspec")
        raise UserError(f"artifact root {url} needs the {package} package: pip install {package}") from error


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an object store (an fsspec URL such as ``s3://bucket/team``), not a local path."""
    return "://" in str(path)


def is_object_store(fs) -> bool:
    """Whether an fsspec filesystem is an object store (``OBJECT_STORES``), which has no atomic rename."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return bool(OBJECT_STORES.intersection(protocols))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file so that it appears whole or not at all.

    On a filesystem (a local path, or a URL of one that renames, such as ``memory://``) ``write`` fills a temporary
    file ``.tmp-<host>-<pid>-<uuid>-<name>`` in the same directory, which is fsynced and then renamed over ``path``.
    On an object store (``is_object_store``: S3, GCS, Azure) ``write`` fills a buffer in memory that is then stored
    as the final object in one request (a PUT, or above 100 MiB an S3 multipart upload, which shows nothing until it
    completes): the store replaces an object whole, readers see the old object or the new one, and no temporary
    object is ever listed. If ``write`` raises, nothing is stored and ``path`` is untouched.

    Args:
        path: local path or fsspec URL.
        write: called with a binary file object.
    """
    path = os.fspath(path)
    directory, name = path.rsplit("/", 1) if "/" in path else (".", path)
    tmp = f"{directory}/{TMP_PREFIX}{_host()}-{os.getpid()}-{uuid.uuid4().hex}-{name}"
    if is_url(path):
        fs, fs_path = url_fs(path)
        if is_object_store(fs):
            buffer = io.BytesIO()
            write(buffer)
            fs.pipe_file(fs_path, buffer.getvalue())
            return
        fs_tmp = fs._strip_protocol(tmp)
        try:
            with fs.open(fs_tmp, "wb") as file:
                write(file)
            fs.mv(fs_tmp, fs_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                fs.rm(fs_tmp)
            raise
        return
    os.makedirs(directory, exist_ok=True)
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable_folder(path: str | os.PathLike, what: str) -> None:
    """Refuse a local folder that is a file or cannot be created or written, before anything is computed: the
    nearest existing folder on its path is probed with a temporary folder (this also catches read-only mounts and
    places even root cannot write). URLs are not probed.

    Raises:
        UserError: naming ``what`` (e.g. ``--out``), the problem and the fix.
    """
    path = os.fspath(path)
    if is_url(path):
        return
    if not path.strip():
        raise UserError(f"{what}: empty path; name a folder")
    existing = Path(path).absolute()
    if existing.exists() and not existing.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder: choose a folder")
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {path}: {existing} is a file, not a folder: choose another place")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=existing))
    except OSError as error:
        raise UserError(f"{what} {path}: cannot write in {existing} ({error.strerror or error}): choose a folder "
                        "you can write") from None


def object_version(info: dict) -> str:
    """What changes when an object (an fsspec ``info``) is replaced: its ETag where the store gives one (S3's
    modification times have one-second steps, so a part rewritten within a second at the same size would otherwise
    look unchanged), else its modification or creation time."""
    for key in ("ETag", "etag", "mtime", "LastModified", "updated", "created"):
        if info.get(key) is not None:
            return f"{key}:{info[key]}"
    return ""


def exists(path: str) -> bool:
    """Whether a file exists at a local path or fsspec URL."""
    if is_url(path):
        fs, fs_path = url_fs(path)
        return fs.exists(fs_path)
    return os.path.exists(path)


def list_names(directory: str) -> set[str]:
    """The names of the files directly in a local folder or fsspec URL (empty when it does not exist)."""
    if is_url(directory):
        fs, fs_path = url_fs(directory)
        try:
            return {entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(fs_path, detail=False)}
        except FileNotFoundError:
            return set()
    try:
        return {entry.name for entry in os.scandir(directory) if entry.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def remove(path: str) -> None:
    """Delete a file at a local path or fsspec URL."""
    if is_url(path):
        fs, fs_path = url_fs(path)
        fs.rm(fs_path)
    else:
        os.remove(path)


def read_bytes(path: str) -> bytes:
    """The contents of a file at a local path or fsspec URL."""
    if is_url(path):
        fs, fs_path = url_fs(path)
        return fs.cat_file(fs_path)
    with open(path, "rb") as file:
        return file.read()


def stale_temps(directory: str | os.PathLike) -> list[str]:
    """Temporary files in a local ``directory`` left by writers on this host that no longer run (a process killed
    mid-write); other hosts' and live writers' files are not listed."""
    host = _host()
    found = []
    for path in Path(directory).glob(f"{TMP_PREFIX}{host}-*"):
        pid = path.name[len(TMP_PREFIX) + len(host) + 1:].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            found.append(str(path))
    return found


def remove_stale_temps(directory: str | os.PathLike) -> list[str]:
    """Delete the ``stale_temps`` of a local ``directory``; returns the paths removed."""
    removed = []
    for path in stale_temps(directory):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        removed.append(path)
    return removed


def _host() -> str:
    # Temporary names carry the writer's host and pid, so a later run can tell a killed writer's debris from a live
    # writer's file; '-' separates the fields.
    return socket.gethostname().replace("-", "_")


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # every whole PNG ends with this empty IEND chunk


def png_ends(path: str) -> bool:
    """Whether a stored PNG ends as a whole one does (its last 12 bytes are the IEND chunk): a cheap check, one
    small read, that catches a truncated file; ``locolab verify`` checks every chunk."""
    try:
        if is_url(path):
            fs, fs_path = url_fs(path)
            return fs.cat_file(fs_path, start=max(0, fs.size(fs_path) - len(PNG_END))) == PNG_END
        with open(path, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - len(PNG_END)))
            return file.read() == PNG_END
    except OSError:
        return False


def write_png_atomic(path: str | os.PathLike, image) -> None:
    """Save a PIL image as PNG at ``path`` (local path or fsspec URL), atomically."""
    atomic_write(path, lambda file: image.save(file, format="PNG"))


def write_table(table: str, data: pa.Table | Iterable[dict], part: str,
                root: str | os.PathLike | None = None) -> list[str]:
    """Append rows to a table as new Parquet files, one per partition, each written atomically.

    Rows are conformed to ``SCHEMAS[table]``: columns missing from ``data`` are NULL, unknown columns are an error,
    and ``schema_version`` is always stamped with ``SCHEMA_VERSION``. Writing the same ``part`` again replaces the
    file (how a run's row is updated when it finishes).

    Args:
        table: a key of ``SCHEMAS``.
        data: a pyarrow Table or dicts, one per row.
        part: file name stem, ``part-<part>.parquet``; unique per writer (see the module docstring).
        root: artifact root (``resolve_root``).

    Returns:
        The paths written.
    """
    if "/" in part or part.startswith(TMP_PREFIX):
        raise ValueError(f"bad part name {part!r}")
    arrow = conform(table, data)
    keys = PARTITIONS[table]
    written = []
    for values in arrow.select(keys).group_by(keys).aggregate([]).to_pylist() if keys else [{}]:
        if None in values.values():
            raise ValueError(f"{table} rows need non-null {', '.join(keys)}")
        rows = arrow.filter(reduce(pc.and_, [pc.equal(arrow[k], v) for k, v in values.items()])) if keys else arrow
        path = part_path(table, part, values, root)
        atomic_write(path, lambda file, rows=rows: pq.write_table(rows, file, compression="zstd"))
        written.append(path)
    return written


def part_path(table: str, part: str, partition: dict, root: str | os.PathLike | None = None) -> str:
    """The path of one Parquet part: ``tables/<table>/<key>=<value>/.../part-<part>.parquet`` under the root.

    Args:
        partition: the values of ``PARTITIONS[table]`` for this file's rows.
    """
    keys = PARTITIONS[table]
    directory = "/".join(["tables", table] + [f"{k}={urllib.parse.quote(str(partition[k]), safe='')}" for k in keys])
    return join(resolve_root(root), f"{directory}/part-{part}.parquet")


def conform(table: str, data: pa.Table | Iterable[dict]) -> pa.Table:
    """``data`` as a pyarrow Table with exactly ``SCHEMAS[table]``'s columns and types (see ``write_table``)."""
    schema = SCHEMAS[table]
    if not isinstance(data, pa.Table):
        rows = list(data)
        names = list(dict.fromkeys(key for row in rows for key in row))
        unknown = [name for name in names if name not in schema.names]
        if unknown:
            raise ValueError(f"unknown {table} columns: {unknown}")
        data = pa.Table.from_pylist(rows, schema=pa.schema([schema.field(name) for name in names]))
    unknown = [name for name in data.column_names if name not in schema.names]
    if unknown:
        raise ValueError(f"unknown {table} columns: {unknown}")
    columns = [pa.array([SCHEMA_VERSION] * data.num_rows, field.type) if field.name == "schema_version"
               else data[field.name].cast(field.type) if field.name in data.column_names
               else pa.nulls(data.num_rows, field.type)
               for field in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _kind(kind: pa.DataType) -> str:
    """The kind of a column type that matters to a reader: text, number or time (DuckDB unifies within a kind)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return "number"
    if pa.types.is_list(kind):  # Parquet names a list's items "element", Arrow "item": compare what they hold
        return f"list of {_kind(kind.value_type)}"
    return "time" if pa.types.is_timestamp(kind) else str(kind)


_KINDS = {table: {field.name: _kind(field.type) for field in schema} for table, schema in SCHEMAS.items()}


def file_problem(table: str, data: pa.Table) -> str | None:
    """Why ``data`` (a whole Parquet file) is not a LocoLab ``table`` part this version can read, or None: it lacks
    ``schema_version``, or a column has the wrong kind of type (a foreign file that happens to have a
    ``schema_version`` column would otherwise break every query over its table). Files of a newer version are not
    judged here (``Store.connect`` refuses them)."""
    if "schema_version" not in data.column_names:
        return "no schema_version column: not a LocoLab table"
    if _kind(data.schema.field("schema_version").type) != "number":
        return "schema_version is not a number: not a LocoLab table"
    newest = pc.max(data["schema_version"]).as_py()
    if newest is not None and newest > SCHEMA_VERSION:
        return None
    expected = _KINDS[table]
    wrong = [f"{field.name} is {_kind(field.type)}, not {expected[field.name]}" for field in data.schema
             if field.name in expected and _kind(field.type) != expected[field.name]]
    return f"not a LocoLab {table} table: {'; '.join(wrong)}" if wrong else None


# Verdicts on whole files by (path, mtime, size): every file is read completely once per process (a damaged data
# page behind a valid footer fails only when read), and a dashboard reconnecting every few seconds re-reads only
# changed files. A verdict is (problem or None, newest schema_version in the file, whether it is ``outdated``).
_VERDICTS: dict[tuple, tuple[str | None, int | None, bool]] = {}
# An object store's readable parts, by URL: (the cache key it was listed with, its contents from one whole GET).
# DuckDB would read a part in several requests (footer, then column chunks), and a part replaced in between (a run's
# row rewritten when it finishes) would mix two versions ("Invalid data"); a single GET returns one version whole.
_WHOLE: dict[str, tuple[tuple, pa.Table]] = {}
MIGRATE = "python -m locolab.compute.migrate"  # the command that rewrites ``outdated`` files as the current version


def outdated(table: str, data: pa.Table) -> bool:
    """Whether a readable file of ``table`` was written before v3 with rows of a method that stored its sites in
    LocoGen's columns (``SITE_METHODS_BEFORE_V3``): this version would misread them, ``MIGRATE`` rewrites them."""
    if table not in ("cases", "scores") or "method" not in data.column_names:
        return False
    if (pc.max(data["schema_version"]).as_py() or 0) >= 3:
        return False
    return pc.any(pc.is_in(data["method"], pa.array(SITE_METHODS_BEFORE_V3))).as_py() or False


class Store:
    """Read access to an artifact root through DuckDB views, one per table of ``SCHEMAS``.

    Args:
        root: artifact root (``resolve_root``): a local path or an fsspec URL.

    Attributes:
        skipped: (path, reason) of each unreadable or foreign Parquet file left out by ``files`` since the last
            ``connect()``.
        outdated: the readable files (``files``) that this version would misread (``outdated``).
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_root(root)
        self.skipped: list[tuple[str, str]] = []
        self.newest_version: int | None = None
        self.outdated: list[str] = []
        self._keys: dict[str, tuple] = {}  # each readable file's cache key as last listed
        self._fs = url_fs(self.root)[0] if is_url(self.root) else None

    def path(self, relpath: str) -> str:
        """The full path or URL of a root-relative path such as ``cases.image_path``."""
        return join(self.root, relpath)

    def files(self, table: str) -> list[str]:
        """Readable Parquet files of ``table``, sorted; unreadable or foreign ones are appended to ``skipped``, and
        ``newest_version`` is raised to the newest schema version among the readable ones."""
        readable = []
        for path, key in self._list(self.path(f"tables/{table}")):
            if key not in _VERDICTS:
                _VERDICTS[key] = self._verdict(path, table, key)
            problem, version, old = _VERDICTS[key]
            if problem is None:
                readable.append(path)
                self._keys[path] = key
                if old:
                    self.outdated.append(path)
                if version is not None and (self.newest_version is None or version > self.newest_version):
                    self.newest_version = version
            else:
                self.skipped.append((path, problem))
        return readable

    def _list(self, directory: str) -> list[tuple[str, tuple]]:
        """(path, cache key) of each finished Parquet file under ``directory``."""
        found = []
        if self._fs is None:
            for parent, _, names in os.walk(directory):
                for name in names:
                    if name.endswith(".parquet") and not name.startswith(TMP_PREFIX):
                        path = os.path.join(parent, name)
                        try:
                            stat = os.stat(path)
                        except FileNotFoundError:  # replaced while we looked: its successor is read next time
                            continue
                        found.append((path, (path, stat.st_mtime_ns, stat.st_size)))
        else:
            for path, info in self._fs.find(directory, detail=True).items():
                name = path.rsplit("/", 1)[-1]
                if name.endswith(".parquet") and not name.startswith(TMP_PREFIX):
                    url = self._fs.unstrip_protocol(path)
                    found.append((url, (url, object_version(info), info.get("size"))))
        return sorted(found)

    def read(self, path: str) -> pa.Table:
        """A whole Parquet file of this root (local path or URL; an object is read in one request, so one version
        of it)."""
        if self._fs is None:
            return pq.read_table(path)
        return pq.read_table(pa.BufferReader(self._fs.cat_file(path)))

    def _verdict(self, path: str, table: str, key: tuple) -> tuple[str | None, int | None, bool]:
        try:
            data = self.read(path)
        except Exception as error:  # whatever a damaged file raises (Arrow, thrift, OS), it is unreadable
            text = str(error).splitlines()[0] if str(error) else type(error).__name__
            return f"unreadable Parquet: {text}", None, False
        problem = file_problem(table, data)
        if problem is not None:
            return problem, None, False
        if self._fs is not None:
            _WHOLE[path] = (key, data)
        return None, pc.max(data["schema_version"]).as_py(), outdated(table, data)

    def _whole(self, path: str) -> pa.Table:
        """A readable part of an object-store root as listed (``_WHOLE``), read again only once replaced."""
        key = self._keys[path]
        if path not in _WHOLE or _WHOLE[path][0] != key:
            _WHOLE[path] = (key, self.read(path))
        return _WHOLE[path][1]

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB connection with one view per table over the files present now (an object
        store's as read whole when listed, so each view shows one version of each part).

        A table without files is an empty view with the current schema's columns; columns added since a file was
        written read as NULL.

        Raises:
            UserError: a file was written with a newer schema version than this LocoLab knows, or is ``outdated``.
        """
        self.skipped, self.newest_version, self.outdated, self._keys = [], None, [], {}
        files = {table: self.files(table) for table in SCHEMAS}
        self.check_version()
        con = duckdb.connect()
        for table, schema in SCHEMAS.items():
            con.register(f"_empty_{table}", schema.empty_table())
            query = f"SELECT * FROM _empty_{table}"
            if files[table] and self._fs is not None:  # the parts as read whole (``_WHOLE``), one version each
                parts = [self._whole(path) for path in files[table]]
                con.register(f"_parts_{table}", pa.concat_tables(parts, promote_options="permissive"))
                query += f" UNION ALL BY NAME SELECT * FROM _parts_{table}"
            elif files[table]:
                paths = ", ".join("'" + path.replace("'", "''") + "'" for path in files[table])
                # Directory names are for people and file pruning tools; the columns inside the files are the truth.
                query += (f" UNION ALL BY NAME SELECT * FROM read_parquet([{paths}], union_by_name=true, "
                          "hive_partitioning=false)")
            con.execute(f"CREATE VIEW {table} AS {query}")
        return con

    def check_version(self) -> None:
        """Refuse a root holding files of a newer schema version, or ``outdated`` ones (among those ``files`` has
        read).

        Raises:
            UserError: naming the version and the fix.
        """
        if self.newest_version is not None and self.newest_version > SCHEMA_VERSION:
            raise UserError(f"artifact root {self.root} written by a newer LocoLab (schema v{self.newest_version} > "
                            f"v{SCHEMA_VERSION}); upgrade LocoLab")
        if self.outdated:
            raise UserError(f"artifact root {self.root} has {len(self.outdated)} file(s) of causal tracing or "
                            f"attention contribution from before schema v{SCHEMA_VERSION} (their sites are in other "
                            f"columns now): run `{MIGRATE} {self.root}` to rewrite them exactly, then open it again")

    def check_writable(self) -> None:
        """Before writing into this root: it is (or can become) a writable folder, and no file in it was written by
        a newer LocoLab, so nothing is written into a root this version would misread.

        Raises:
            UserError: naming the problem and the fix.
        """
        check_writable_folder(self.root, "artifact root")
        self.skipped, self.newest_version, self.outdated = [], None, []
        for table in SCHEMAS:
            self.files(table)
        self.check_version()


def existing_case_ids(root: str | os.PathLike | None = None, scorer_id: str | None = None,
                      run_id: str | None = None) -> set[str]:
    """Case ids that already have a score, for resuming a sweep.

    Args:
        root: artifact root (``resolve_root``).
        scorer_id: count only scores by this scorer; any scorer when None.
        run_id: count only this run's scores; any run when None (case ids are deterministic, so another run's
            score of the same case is the same result).
    """
    con = Store(root).connect()
    rows = con.execute("SELECT DISTINCT case_id FROM scores WHERE ($scorer IS NULL OR scorer_id = $scorer) "
                       "AND ($run IS NULL OR run_id = $run)", {"scorer": scorer_id, "run": run_id}).fetchall()
    return {case_id for (case_id,) in rows}
