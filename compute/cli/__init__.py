"""``locolab COMMAND`` (or ``python -m compute COMMAND``): the command-line entry point. Each command lives in its own
module and registers itself with ``add_parser(subparsers)``; bad input (``UserError``) prints one line and exits with
code 2. Commands parse and print; what they do lives in the library modules a notebook calls too."""

import argparse
import os
import sys

from contract.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from compute.cli import (
        contribution,
        dashboard,
        edit,
        eval_edit,
        generate,
        layers,
        reproduce,
        summary,
        sweep,
        trace,
    )

    prog = "locolab" if os.path.basename(sys.argv[0]) == "locolab" else "python -m compute"
    parser = argparse.ArgumentParser(prog=prog, description="LocoLab: localize and edit concepts in text-to-image "
                                                          "models (LocoGen, LocoEdit and baselines).")
    parser.add_argument("--status-file", metavar="PATH",
                        help="report stage, progress and result as JSON to PATH (for launchers such as the dashboard)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (layers, generate, sweep, summary, trace, contribution, reproduce, edit, eval_edit, dashboard):
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from compute.cli import status

    parser = build_parser()
    args = parser.parse_args(argv)
    status.report_to(args.status_file, args.command)
    try:
        code = args.func(args) or 0
    except UserError as exc:
        status.report(stage="failed", error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status.report(stage="finished")
    return code
