"""``python -m dashboard.job_runner JOB_DIR``: run one job's ``python -m compute`` command (``dashboard.jobs``),
send its output to the job's log, let it report to the job's ``status.json`` and record how it ended in
``exit.json``.

The runner writes its pid only once it handles SIGTERM, so a cancel (SIGTERM to the whole process group) always
finds it ready: the command is asked to stop, given a few seconds, then killed. A cancel that comes before the pid
leaves a mark that the runner reads before it starts the command.
"""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from locolab.contract.names import JOB_STATUS
from locolab.dashboard.jobs import (
    CANCELLED,
    EXIT,
    LOG,
    PID,
    REPO,
    SPEC,
    command_line,
    now,
    process_identity,
    read_file,
    write_json,
)

KILL_AFTER_S = 10


def run_command(path: Path, args: list[str], stop: threading.Event) -> int:
    """Run ``python -m compute ARGS`` with output to the log until it ends or ``stop`` is set; its exit status."""
    with open(path / LOG, "ab", buffering=0) as log:
        log.write(f"$ {command_line(args)}\n".encode())
        command = [sys.executable, "-m", "locolab", f"--status-file={path / JOB_STATUS}", *args]
        process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            if stop.wait(0.5):
                process.terminate()
                try:
                    process.wait(KILL_AFTER_S)
                except subprocess.TimeoutExpired:
                    process.kill()
        code = process.wait()
        log.write(f"[exit status {code}]\n".encode())
    return code


def main(job_dir: str) -> int:
    path = Path(job_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # With its start time and command line, so that the dashboard can tell this runner from a later process that
    # reuses the pid, and from a planted pid.json.
    write_json(path / PID, {"pid": os.getpid(), **(process_identity(os.getpid()) or {})})
    spec = json.loads(read_file(path / SPEC))
    code = None if (path / CANCELLED).exists() else run_command(path, spec["args"], stop)
    write_json(path / EXIT, {"returncode": code, "finished_at": now()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
