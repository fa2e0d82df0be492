"""``python -m compute COMMAND``: the command-line entry point. Each command lives in its own module and registers
itself with ``add_parser(subparsers)``; bad input (``UserError``) prints one line and exits with code 2."""

import argparse
import sys

from .errors import UserError

COMMAND_MODULES = ("layers_cmd", "generate_cmd", "sweep_cmd", "trace_cmd", "edit_cmd", "eval_cmd")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="python -m compute", description=__doc__.split(".")[0] + ".")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"compute.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
