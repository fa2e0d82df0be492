"""Which artifact root the dashboard reads, and the rule that it touches files only inside that root.

The root comes from, in order: a path typed into the sidebar (unless the server was started with ``--lock-root``),
``streamlit run dashboard/main.py -- --artifacts ROOT``, ``$LOCOLAB_ARTIFACTS``, else ``artifacts`` in the working
directory. Only local folders are served: jobs write logs there and images are read from disk.
"""

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from contract.store import DEFAULT_ROOT, ROOT_ENV


@dataclass(frozen=True)
class LaunchOptions:
    """Options given after ``--`` on the ``streamlit run`` command line.

    Attributes:
        root: the artifact root to start with.
        source: where ``root`` came from, for the Overview page.
        lock_root: forbid switching roots from the page (for a dashboard served to a team).
        max_jobs: how many compute jobs may run at once.
    """

    root: str
    source: str
    lock_root: bool
    max_jobs: int = 1


def launch_options(argv: list[str] | None = None) -> LaunchOptions:
    """Parse ``--artifacts``, ``--lock-root`` and ``--max-jobs`` from ``argv`` (default ``sys.argv``), ignoring
    anything else (under AppTest, ``sys.argv`` is pytest's)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--artifacts")
    parser.add_argument("--lock-root", action="store_true")
    parser.add_argument("--max-jobs", type=int, default=1)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.artifacts:
        root, source = args.artifacts, "--artifacts"
    elif os.environ.get(ROOT_ENV):
        root, source = os.environ[ROOT_ENV], f"${ROOT_ENV}"
    else:
        root, source = DEFAULT_ROOT, "default"
    return LaunchOptions(root, source, args.lock_root, max(1, args.max_jobs))


def problem(root: str) -> str | None:
    """Why ``root`` cannot be served, or None."""
    if "://" in root:
        return f"{root} is a URL; the dashboard serves local folders only (sync it to a folder first)"
    path = Path(root)
    if path.exists() and not path.is_dir():
        return f"{root} is a file, not a folder"
    return None


def inside(root: str, relpath: str) -> Path | None:
    """The file ``relpath`` (a '/'-separated path from the tables) under ``root``, or None if it would leave the
    root (absolute paths, ``..``, symbolic links pointing out)."""
    base = Path(root).resolve()
    path = (base / relpath).resolve()
    return path if path.is_relative_to(base) and path != base else None
