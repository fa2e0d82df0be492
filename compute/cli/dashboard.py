"""``locolab dashboard``: serve the dashboard (``streamlit run`` on the installed ``dashboard/main.py``) over an
artifact root."""

import subprocess
import sys
from pathlib import Path

from contract.store import DEFAULT_ROOT, ROOT_ENV


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("dashboard", help="open the dashboard on an artifact root (Streamlit)")
    parser.add_argument("--artifacts", help=f"artifact root (default ${ROOT_ENV} or {DEFAULT_ROOT}/)")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--lock-root", action="store_true", help="forbid switching roots from the page")
    parser.set_defaults(func=run)


def run(args) -> int:
    import dashboard

    main = Path(dashboard.__file__).with_name("main.py")
    # The settings of the repository's .streamlit/config.toml, which an installed package does not carry.
    command = [sys.executable, "-m", "streamlit", "run", str(main), f"--server.port={args.port}",
               "--server.address=127.0.0.1", "--server.headless=true", "--browser.gatherUsageStats=false",
               "--client.showErrorDetails=type", "--client.toolbarMode=minimal", "--"]
    command += [f"--artifacts={args.artifacts}"] if args.artifacts else []
    command += ["--lock-root"] if args.lock_root else []
    return subprocess.call(command)
