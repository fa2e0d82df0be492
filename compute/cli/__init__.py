"""``locolab COMMAND`` (or ``python -m compute COMMAND``): the command-line entry point. Each command lives in its own
module and registers itself with ``add_parser(subparsers)``. Commands parse and print; what they do lives in the
library modules a notebook calls too.

Bad input prints one line naming the problem and the fix and exits with code 2: ``main`` is the one place that turns
the known exception types into that line (``UserError``, a bad command line, an unreadable or unwritable path, the
device running out of memory); anything else is a bug and keeps its traceback. Ctrl-C ends a command with one line
and exit code 130, a closed output pipe (``| head``) with one line and 141, the shell's codes for those signals."""

import argparse
import contextlib
import os
import sys

from locolab.contract.errors import UserError


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are bad input like any other: one line through ``main``, not usage text."""

    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from locolab.compute.cli import (
        benchmark,
        contribution,
        dashboard,
        edit,
        eval_edit,
        export_edit,
        generate,
        layers,
        many_concepts,
        reproduce,
        summary,
        sweep,
        trace,
        verify,
    )

    prog = "locolab" if os.path.basename(sys.argv[0]) == "locolab" else "python -m compute"
    parser = _Parser(prog=prog, description="LocoLab: localize and edit concepts in text-to-image models (LocoGen, "
                                            "LocoEdit and baselines).")
    parser.add_argument("--status-file", metavar="PATH",
                        help="report stage, progress and result as JSON to PATH (for launchers such as the dashboard)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (layers, generate, sweep, summary, trace, contribution, reproduce, edit, eval_edit, export_edit,
                    many_concepts, verify, benchmark, dashboard):
        command.add_parser(subparsers)
    return parser


def one_line(error: BaseException) -> str | None:
    """The one-line message of a known kind of failure, or None for anything else (a bug)."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, OSError):
        # Unwritable or vanished paths, a file where a folder should be, a full disk, an unreadable image.
        where = f": {error.filename}" if error.filename else ""
        reason = error.strerror or str(error) or type(error).__name__
        return (f"{reason}{where} ({type(error).__name__}): check the path, its permissions and the free space "
                "(`locolab verify` checks an artifact root)")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.OutOfMemoryError):
        return "the device ran out of memory: lower --batch-size or --size, or use a device with more memory"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (2 for bad input, after one line on stderr)."""
    from locolab.compute.cli import status

    try:
        args = build_parser().parse_args(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        status.report_to(args.status_file, args.command)
        code = args.func(args) or 0
        sys.stdout.flush()  # a closed pipe fails here, not in the interpreter's exit
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            status.report(stage="interrupted")
        print("interrupted; rerun to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):  # later prints (and the exit's flush) go nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        with contextlib.suppress(OSError):
            status.report(stage="failed", error="output pipe closed")
        print("error: the output pipe closed before the command finished (its reader exited, e.g. `| head`); what "
              "was stored is kept: rerun to resume", file=sys.stderr)
        return 141
    except Exception as error:  # known kinds become one line; the rest re-raise below
        message = one_line(error)
        if message is None:
            raise
        with contextlib.suppress(OSError):  # the status file itself may be what failed
            status.report(stage="failed", error=message)
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    status.report(stage="finished")
    return code
