"""The files of an artifact root, a local folder or an object store (an fsspec URL such as ``s3://bucket/team``,
``gs://bucket/team`` or ``memory://root``), listed, read and fingerprinted the same way, never outside the root.

Usage: ``RootFiles("s3://bucket/team").read("images/toyworld/abc.png")``
"""

import hashlib
import os
from pathlib import Path, PurePosixPath

from locolab.contract.errors import UserError
from locolab.contract.store import TMP_PREFIX, is_url, object_version, url_fs

PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


class OutsideRoot(OSError):
    """A path that would leave the artifact root; nothing is read."""


def url_problem(root: str) -> str | None:
    """Why the object-store root ``root`` cannot be read here (its fsspec protocol unknown or its package missing),
    or None."""
    import fsspec

    protocol = root.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        package = PACKAGES.get(protocol, f"the fsspec implementation of {protocol}://")
        return f"{root}: reading {protocol}:// roots needs {package}: pip install {package}"
    except ValueError:
        return (f"{root}: {protocol}:// is not a storage protocol fsspec knows; give a local folder or an s3:// or "
                "gs:// URL")
    return None


class RootFiles:
    """Read access to the files of one root by root-relative, '/'-separated paths (as the tables store them).

    Args:
        root: a local folder or an fsspec URL.

    Raises:
        UserError: the URL's protocol is unknown or its package is missing.
    """

    def __init__(self, root: str):
        self.root = str(root)
        self.url = is_url(self.root)
        if self.url:
            problem = url_problem(self.root)
            if problem:
                raise UserError(problem)
            self.fs, path = url_fs(self.root)  # listings not cached: other processes write the root
            self.base = path.rstrip("/")
        else:
            self.fs, self.base = None, str(Path(self.root).resolve())

    def locate(self, relpath: str) -> str | None:
        """The full path of ``relpath`` under the root (the filesystem's own path for a URL root), or None if it
        would leave the root (absolute, ``..``, a symbolic link pointing out)."""
        if not relpath:
            return None
        if self.url:
            parts = PurePosixPath(relpath).parts
            if PurePosixPath(relpath).is_absolute() or ".." in parts or not parts or "://" in relpath:
                return None
            return f"{self.base}/{'/'.join(parts)}"
        base = Path(self.base)
        path = (base / relpath).resolve()
        return str(path) if path.is_relative_to(base) and path != base else None

    def shown(self, relpath: str = "") -> str:
        """``relpath`` as a person reads it: a path or URL under the root."""
        return f"{self.root.rstrip('/')}/{relpath}" if relpath else self.root

    def read(self, relpath: str) -> bytes:
        """The contents of the file ``relpath``.

        Raises:
            OutsideRoot: the path leaves the root.
            OSError: it is missing or unreadable.
        """
        path = self.locate(relpath)
        if path is None:
            raise OutsideRoot(f"{relpath} leaves the artifact root")
        if self.url:
            return self.fs.cat_file(path)
        return Path(path).read_bytes()

    def folders(self, relpath: str) -> list[str]:
        """Names of the folders directly in the folder ``relpath`` (empty when it does not exist), sorted."""
        return self._entries(relpath, folders=True)

    def names(self, relpath: str) -> list[str]:
        """Names of the files directly in the folder ``relpath`` (empty when it does not exist), sorted."""
        return self._entries(relpath, folders=False)

    def _entries(self, relpath: str, folders: bool) -> list[str]:
        path = self.locate(relpath)
        if path is None:
            return []
        if self.url:
            try:
                entries = self.fs.ls(path, detail=True)
            except (FileNotFoundError, NotADirectoryError):
                return []
            wanted = "directory" if folders else "file"
            return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == wanted)
        try:
            return sorted(e.name for e in os.scandir(path) if (e.is_dir() if folders else e.is_file()))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def exists(self, relpath: str) -> bool:
        path = self.locate(relpath)
        if path is None:
            return False
        return self.fs.exists(path) if self.url else os.path.exists(path)

    def is_folder(self, relpath: str) -> bool:
        path = self.locate(relpath)
        if path is None:
            return False
        return self.fs.isdir(path) if self.url else os.path.isdir(path)

    def files_under(self, relpath: str) -> list[str]:
        """Root-relative paths of every finished file under the folder ``relpath`` (no ``.tmp-`` names), sorted."""
        path = self.locate(relpath)
        if path is None:
            return []
        if self.url:
            found = self.fs.find(path) if self.fs.exists(path) else []
            found = [name[len(self.base) + 1:] for name in found]
        else:
            found = [os.path.relpath(os.path.join(parent, name), self.base).replace(os.sep, "/")
                     for parent, _, names in os.walk(path) for name in names]
        return sorted(name for name in found if not name.rsplit("/", 1)[-1].startswith(TMP_PREFIX))

    def fingerprint(self, tops: tuple[str, ...] = ("tables", "edits")) -> str:
        """A digest of (path, size, modification time) of every finished file under ``tops``: it changes whenever a
        file is added, replaced or removed there."""
        digest = hashlib.sha1()
        for top in tops:
            if self.url:
                path = self.locate(top)
                infos = self.fs.find(path, detail=True) if self.fs.exists(path) else {}
                for name in sorted(infos):
                    info = infos[name]
                    if name.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                        continue
                    digest.update(f"{name}:{info.get('size')}:{object_version(info)}\n".encode())
                continue
            for parent, directories, names in os.walk(os.path.join(self.base, top)):
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
