"""Background compute jobs launched from the dashboard.

A job is a folder ``<root>/jobs/<job_id>/``: ``job.json`` (the ``python -m compute`` arguments, a label and the
request that made it), ``pid.json`` (its runner, once ready), ``log.txt`` (the command's output), ``status.json``
(the command's own report of stage, progress and result, ``--status-file``) and, once it has ended, ``exit.json``;
``cancelled`` marks a cancel request. The runner (``dashboard.job_runner``) starts in its own
session, so the job outlives page reloads and a dashboard restart, and its state is read back from these files alone.
"""

import datetime
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from contract.errors import UserError
from contract.names import JOB_STATUS, JOBS_DIR
from contract.store import atomic_write, process_alive

REPO = Path(__file__).resolve().parents[1]
SPEC, PID, LOG, EXIT, CANCELLED = "job.json", "pid.json", "log.txt", "exit.json", "cancelled"
ACTIVE = ("starting", "running", "cancelling")
# A runner that has not written its pid this long after launch never started.
START_GRACE_S = 60


@dataclass(frozen=True)
class Job:
    """One job as its files describe it now.

    Attributes:
        job_id: folder name, sortable by launch time.
        path: the job folder.
        spec: the contents of ``job.json``.
        status: starting, running, cancelling, succeeded, failed, cancelled or lost (ended without a record).
        returncode: the command's exit status once ended (negative: killed by that signal; None: cancelled before
            it started).
    """

    job_id: str
    path: Path
    spec: dict
    status: str
    returncode: int | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def report(self) -> dict:
        """The command's ``--status-file`` report (stage, done/total, result), or {} before its first one."""
        try:
            report = json.loads((self.path / JOB_STATUS).read_text())
        except (OSError, ValueError):
            return {}
        return report if isinstance(report, dict) else {}

    def log(self, limit: int = 20_000) -> str:
        """The last ``limit`` characters of the log, progress-bar redraws collapsed to their last state."""
        path = self.path / LOG
        if not path.is_file():
            return ""
        with open(path, "rb") as file:
            file.seek(max(0, path.stat().st_size - limit))
            text = file.read().decode("utf-8", errors="replace")
        return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines())


def jobs_dir(root: str) -> Path:
    """``root/jobs`` as an absolute path (runners work in the repository, not the dashboard's directory)."""
    return Path(root).resolve() / JOBS_DIR


def now() -> str:
    """The current UTC time in ISO format, to the second."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def write_json(path: Path, value: dict) -> None:
    """Write ``value`` as JSON at ``path``, atomically."""
    atomic_write(path, lambda file: file.write(json.dumps(value, indent=2).encode()))


def _alive(pid: int, job_path: Path) -> bool:
    """Whether ``pid`` is this job's runner (not an exited one, nor another process that reused the pid)."""
    if not process_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return str(job_path).encode() in cmdline.read_bytes()
        except OSError:
            return False
    return True


def _pid(path: Path) -> int | None:
    return json.loads((path / PID).read_text())["pid"] if (path / PID).is_file() else None


def load(path: Path) -> Job:
    """Read one job folder."""
    spec = json.loads((path / SPEC).read_text())
    cancelled = (path / CANCELLED).exists()
    if (path / EXIT).is_file():
        code = json.loads((path / EXIT).read_text())["returncode"]
        status = "cancelled" if cancelled else "succeeded" if code == 0 else "failed"
        return Job(path.name, path, spec, status, code)
    pid = _pid(path)
    if pid is None:
        waiting = time.time() - (path / SPEC).stat().st_mtime < START_GRACE_S
        return Job(path.name, path, spec, ("cancelling" if cancelled else "starting") if waiting else "lost", None)
    if _alive(pid, path):
        return Job(path.name, path, spec, "cancelling" if cancelled else "running", None)
    return Job(path.name, path, spec, "cancelled" if cancelled else "lost", None)


def list_jobs(root: str) -> list[Job]:
    """Every job under ``root/jobs``, newest first; folders that are not jobs are ignored."""
    directory = jobs_dir(root)
    found = []
    for path in sorted(directory.iterdir(), reverse=True) if directory.is_dir() else []:
        if path.is_dir() and (path / SPEC).is_file():
            try:
                found.append(load(path))
            except (OSError, ValueError, KeyError):
                continue
    return found


@contextmanager
def _launch_lock(root: str):
    """Serialize launches across browser sessions and dashboard processes (the one-job limit must hold)."""
    jobs_dir(root).mkdir(parents=True, exist_ok=True)
    with open(jobs_dir(root) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def launch(root: str, args: list[str], label: str, request: dict | None = None, max_active: int = 1) -> Job:
    """Start ``python -m compute ARGS`` as a detached job under ``root/jobs``.

    Args:
        root: the artifact root; the job's files and everything the command writes stay under it.
        args: the arguments after ``python -m compute`` (no shell is involved).
        label: a short description for the page.
        request: what the page asked for, kept with the job to show its results later.
        max_active: refuse while this many jobs are starting or running.

    Raises:
        UserError: ``max_active`` jobs are already active.
    """
    with _launch_lock(root):
        active = [job for job in list_jobs(root) if job.active]
        if len(active) >= max_active:
            raise UserError(f"job {active[0].job_id} is still {active[0].status}: wait for it or cancel it")
        job_id = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        path = jobs_dir(root) / job_id
        path.mkdir()
        write_json(path / SPEC, {"job_id": job_id, "args": list(args), "label": label, "request": request or {},
                                  "root": str(Path(root).resolve()), "created_at": now()})
        process = subprocess.Popen([sys.executable, "-m", "dashboard.job_runner", str(path)], cwd=REPO,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        # Reap the runner when it ends, so it does not linger as a zombie of the dashboard.
        threading.Thread(target=process.wait, daemon=True).start()
        return load(path)


def cancel(job: Job) -> None:
    """Ask a job to stop: its runner and command get SIGTERM (the runner kills the command if it lingers); a runner
    not ready yet finds the mark and does not start the command."""
    (job.path / CANCELLED).write_text(now())
    pid = _pid(job.path)
    if pid is not None and _alive(pid, job.path):
        os.killpg(pid, signal.SIGTERM)
