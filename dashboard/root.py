"""Which artifact root the dashboard reads, and the rule that it touches files only inside that root.

The root comes from, in order: a path typed into the sidebar (unless the server was started with ``--lock-root``),
``streamlit run dashboard/main.py -- --artifacts ROOT``, ``$LOCOLAB_ARTIFACTS``, else ``artifacts`` in the working
directory.

A typed root must be an existing folder inside one of the allowed places: the launch root's parent folder by default
(so a team switches between sibling roots, never to ``/`` or a system folder), or the folders given with ``--roots``
at launch. Jobs are launched only into the launch root or an existing LocoLab root (one with ``tables/`` or
``edits/``), so a typed path never becomes a new place that jobs write.

The launch root may also be an object store (an fsspec URL such as ``s3://bucket/team``, read with the host's
credentials): it is served read-only, jobs disabled, unless the operator allows writing with ``--allow-writes`` (or
``$LOCOLAB_DASHBOARD_WRITES=1``). A URL is never accepted as a typed root: viewers must not make the server reach
other buckets with its credentials.
"""

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from locolab.contract.store import DEFAULT_ROOT, ROOT_ENV, is_url
from locolab.dashboard.files import RootFiles, url_problem

WRITES_ENV = "LOCOLAB_DASHBOARD_WRITES"


@dataclass(frozen=True)
class LaunchOptions:
    """Options given after ``--`` on the ``streamlit run`` command line.

    Attributes:
        root: the artifact root to start with.
        source: where ``root`` came from, for the Overview page.
        lock_root: forbid switching roots from the page (for a dashboard served to a team).
        max_jobs: how many compute jobs may run at once.
        roots: folders under which a typed root may lie (empty: the launch root's parent).
        models: models jobs may name besides the registered ones and model folders inside the root (hub ids or
            paths the operator allows).
        allow_writes: let jobs write into an object-store root (``--allow-writes``); local roots are always
            writable.
    """

    root: str
    source: str
    lock_root: bool
    max_jobs: int = 1
    roots: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    allow_writes: bool = False


def launch_options(argv: list[str] | None = None) -> LaunchOptions:
    """Parse ``--artifacts``, ``--lock-root`` and ``--max-jobs`` from ``argv`` (default ``sys.argv``), ignoring
    anything else (under AppTest, ``sys.argv`` is pytest's)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--artifacts")
    parser.add_argument("--lock-root", action="store_true")
    parser.add_argument("--max-jobs", type=int, default=1)
    parser.add_argument("--roots", action="append", default=[])
    parser.add_argument("--allow-model", action="append", default=[])
    parser.add_argument("--allow-writes", action="store_true")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.artifacts:
        root, source = args.artifacts, "--artifacts"
    elif os.environ.get(ROOT_ENV):
        root, source = os.environ[ROOT_ENV], f"${ROOT_ENV}"
    else:
        root, source = DEFAULT_ROOT, "default"
    writes = args.allow_writes or os.environ.get(WRITES_ENV, "").strip().lower() in ("1", "true", "yes")
    return LaunchOptions(root, source, args.lock_root, max(1, args.max_jobs), tuple(args.roots),
                         tuple(args.allow_model), writes)


def problem(root: str) -> str | None:
    """Why ``root`` cannot be served, or None."""
    if is_url(root):
        return url_problem(root)
    path = Path(root)
    if path.exists() and not path.is_dir():
        return f"{root} is a file, not a folder"
    return None


def allowed_places(options: LaunchOptions) -> list[Path]:
    """The folders a typed root must lie in: ``--roots``, else the launch root's parent (the launch root alone when
    that parent is the filesystem's root)."""
    if options.roots:
        return [Path(place).resolve() for place in options.roots]
    launch = Path(options.root).resolve()
    return [launch if launch.parent == Path(launch.anchor) else launch.parent]


def typed_root_problem(typed: str, options: LaunchOptions) -> str | None:
    """Why a root typed into the sidebar is refused, or None: it must be an existing folder inside
    ``allowed_places`` (symbolic links and ``..`` resolved)."""
    if typed == options.root:
        return None
    if is_url(typed):
        return (f"{typed} is a URL: an object-store root is served only when the dashboard is started on it "
                "(--artifacts URL)")
    path = Path(typed).expanduser().resolve()
    places = allowed_places(options)
    if not any(path.is_relative_to(place) for place in places):
        shown = ", ".join(str(place) for place in places)
        return (f"{typed} is outside the folders this dashboard may open ({shown}); start it with --roots DIR to "
                "allow another place")
    if not path.is_dir():
        return f"{typed} is not an existing folder"
    return None


def is_locolab_root(root: str) -> bool:
    """Whether ``root`` is a folder that LocoLab has written (it holds ``tables/`` or ``edits/``)."""
    if is_url(root):
        files = RootFiles(root)
        return files.is_folder("tables") or files.is_folder("edits")
    path = Path(root)
    return (path / "tables").is_dir() or (path / "edits").is_dir()


def job_root_problem(root: str, options: LaunchOptions) -> str | None:
    """Why jobs may not be launched into ``root``, or None: the launch root, or an existing LocoLab root; an
    object-store root only when the operator allowed writing."""
    if is_url(root):
        return None if options.allow_writes else (
            f"{root} is an object store served read-only: jobs are disabled. The operator can allow jobs that write "
            "into it by starting the dashboard with --allow-writes")
    if Path(root).resolve() == Path(options.root).resolve() or is_locolab_root(root):
        return None
    return (f"{root} is not a LocoLab artifact root (no tables/ or edits/): jobs write only into the launch root or "
            "an existing root; start the dashboard with --artifacts to use a new one")


def inside(root: str, relpath: str) -> Path | None:
    """The file ``relpath`` (a '/'-separated path from the tables) under ``root``, or None if it would leave the
    root (absolute paths, ``..``, symbolic links pointing out)."""
    base = Path(root).resolve()
    path = (base / relpath).resolve()
    return path if path.is_relative_to(base) and path != base else None
