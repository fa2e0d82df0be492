"""``locolab dashboard``: serve the dashboard (``streamlit run`` on the installed ``dashboard/main.py``) over an
artifact root."""

import importlib.util
import subprocess
import sys
from pathlib import Path

from locolab.contract import bounds
from locolab.contract.store import DEFAULT_ROOT, ROOT_ENV


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("dashboard", help="open the dashboard on an artifact root (Streamlit)")
    parser.add_argument("--artifacts", help=f"artifact root (default ${ROOT_ENV} or {DEFAULT_ROOT}/)")
    parser.add_argument("--port", type=bounds.PORT.parse, default=8501)
    parser.add_argument("--lock-root", action="store_true", help="forbid switching roots from the page")
    parser.add_argument("--roots", action="append", metavar="DIR",
                        help="a folder under which roots typed into the page may lie (repeatable; default: the "
                             "launch root's parent)")
    parser.add_argument("--allow-model", action="append", metavar="NAME",
                        help="a model (hub id or folder) edit jobs may name besides the registered ones and model "
                             "folders inside the root (repeatable)")
    parser.add_argument("--max-jobs", type=bounds.POSITIVE_COUNT.parse, default=1,
                        help="compute jobs that may run at once")
    parser.add_argument("--allow-writes", action="store_true",
                        help="let jobs write into an object-store root (s3://, gs://); without it such a root is "
                             "served read-only")
    parser.set_defaults(func=run)


def run(args) -> int:
    # Found, not imported: the dashboard runs in its own process, and compute never imports it.
    main = Path(importlib.util.find_spec("dashboard").origin).with_name("main.py")
    # The settings of the repository's .streamlit/config.toml, which an installed package does not carry.
    command = [sys.executable, "-m", "streamlit", "run", str(main), f"--server.port={args.port}",
               "--server.address=127.0.0.1", "--server.headless=true", "--browser.gatherUsageStats=false",
               "--client.showErrorDetails=type", "--client.toolbarMode=minimal", "--"]
    command += [f"--artifacts={args.artifacts}"] if args.artifacts else []
    command += ["--lock-root"] if args.lock_root else []
    command += [f"--roots={place}" for place in args.roots or []]
    command += [f"--allow-model={name}" for name in args.allow_model or []]
    command += [f"--max-jobs={args.max_jobs}"]
    command += ["--allow-writes"] if args.allow_writes else []
    return subprocess.call(command)
