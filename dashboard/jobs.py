"""Background compute jobs launched from the dashboard.

A job is a folder ``<root>/jobs/<job_id>/``: ``job.json`` (the ``python -m compute`` arguments, a label and the
request that made it), ``pid.json`` (its runner, once ready), ``log.txt`` (the command's output), ``status.json``
(the command's own report of stage, progress and result, ``--status-file``) and, once it has ended, ``exit.json``;
``cancelled`` marks a cancel request. The runner (``dashboard.job_runner``) starts in its own
session, so the job outlives page reloads and a dashboard restart, and its state is read back from these files alone.

``pid.json`` records the runner's pid with its start time and command line. Anyone who can write the root can write
these files, so nothing in them is trusted to name a process: a job counts as running only while a process with
the recorded pid (> 1) exists with the recorded start time and command line, and that command line names the job's
folder; anything else (a planted ``{"pid": 0}``, a pid reused by another process, an unreadable file) is a job that
no longer runs, and cancel signals only a verified runner's own process group. For the same reason a job file is
read only when it is a regular file of at most ``MAX_FILE_BYTES`` (a named pipe planted as ``pid.json`` would block
the page for ever), and a ``job.json`` dated in the future does not keep its job "starting".
"""

import datetime
import fcntl
import getpass
import hashlib
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from locolab.contract.errors import UserError
from locolab.contract.names import JOB_STATUS, JOBS_DIR
from locolab.contract.store import atomic_write, is_url, process_alive

REPO = Path(__file__).resolve().parents[1]
SPEC, PID, LOG, EXIT, CANCELLED = "job.json", "pid.json", "log.txt", "exit.json", "cancelled"
SPEC_FILE = "spec.json"  # the command's ``--spec`` file, when it has one
ACTIVE = ("starting", "running", "cancelling")
# A runner that has not written its pid this long after launch never started.
START_GRACE_S = 60
# A job.json whose mtime lies further than this in the future (a clock set back, or a planted date) starts nothing.
CLOCK_SLACK_S = 5
# Job folders read (newest first): the page lists and checks no more than these.
MAX_JOBS = 200
# The largest job file read back (job.json, pid.json, status.json, exit.json): a bigger one is damaged or planted.
MAX_FILE_BYTES = 1 << 20


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
        report = _read(self.path / JOB_STATUS)
        return report if isinstance(report, dict) else {}

    def result(self) -> dict:
        """What the command produced (e.g. ``edit_id``, ``eval_id``), from its report; {} if none."""
        result = self.report().get("result")
        return result if isinstance(result, dict) else {}

    @property
    def label(self) -> str:
        return str(self.spec.get("label", "(no label)"))

    @property
    def user(self) -> str:
        """Who launched it (``launched_by`` at launch; jobs from before the record: "–")."""
        return str(self.spec.get("user") or "–")

    @property
    def command(self) -> str:
        """The command it runs, shell-quoted: pasted into a shell it runs the same (``command_line``)."""
        args = self.spec.get("args")
        return command_line([str(a) for a in args]) if isinstance(args, list) else "–"

    def log(self, limit: int = 20_000) -> str:
        """The last ``limit`` characters of the log, progress-bar redraws collapsed to their last state."""
        try:
            with _open_regular(self.path / LOG) as file:
                file.seek(max(0, os.fstat(file.fileno()).st_size - limit))
                text = file.read(limit).decode("utf-8", errors="replace")
        except OSError:
            return ""
        # Split on line feeds only: splitlines() would split at each carriage return too, keeping every redraw.
        lines = text.replace("\r\n", "\n").removesuffix("\n").split("\n")
        return "\n".join(line.rsplit("\r", 1)[-1] for line in lines)


def command_line(args: list[str]) -> str:
    """``python -m locolab ARGS`` as one shell-quoted line (a concept with a space or a quote stays one word)."""
    return shlex.join(["python", "-m", "locolab", *args])


def launched_by() -> str:
    """The dashboard's user, from the environment (``LOGNAME``, ``USER``, ..., else the account's name): everyone
    working on a root sees who launched each job."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def jobs_dir(root: str) -> Path:
    """``root/jobs`` as an absolute path (runners work in the repository, not the dashboard's directory). An
    object-store root's jobs (pid files, logs, locks need a local disk) live in this host's cache folder instead,
    ``$XDG_CACHE_HOME/locolab/jobs/<digest of the URL>``."""
    if is_url(root):
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cache / "locolab" / JOBS_DIR / hashlib.sha1(root.encode()).hexdigest()[:16]
    return Path(root).resolve() / JOBS_DIR


def now() -> str:
    """The current UTC time in ISO format, to the second."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def write_json(path: Path, value: dict) -> None:
    """Write ``value`` as JSON at ``path``, atomically."""
    atomic_write(path, lambda file: file.write(json.dumps(value, indent=2).encode()))


def _open_regular(path: Path):
    """``path`` opened for reading if it is a regular file (following links). Anything else (a named pipe, a device,
    a socket, a folder) is refused before it is opened for reading: opening a pipe blocks until someone writes.

    Raises:
        OSError: missing, unreadable, or not a regular file.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{path} is not a regular file")
    # Non-blocking, and checked again once open: the path may have been swapped for a pipe in between.
    file = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY), "rb")
    if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        file.close()
        raise OSError(f"{path} is not a regular file")
    return file


def read_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a job file that is a regular file of at most ``limit`` bytes.

    Raises:
        OSError: missing, unreadable, not a regular file, or larger than ``limit``.
    """
    with _open_regular(path) as file:
        content = file.read(limit + 1)
    if len(content) > limit:
        raise OSError(f"{path} is larger than {limit} bytes")
    return content


def _read(path: Path):
    """A job file's JSON value, or None when it is missing, unreadable, not a regular file or too large."""
    try:
        return json.loads(read_file(path).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def process_identity(pid) -> dict | None:
    """The start time and command line of the live process ``pid``, which tell it from a later process that reuses
    the pid; None when there is no such process (or ``pid`` is 0, 1 or negative, which name groups, init or
    nothing). Linux reads ``/proc``; elsewhere ``ps``."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or not process_alive(pid):
        return None
    if Path("/proc/self/stat").exists():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        # Field 22, after the parenthesised command name (which may hold spaces): start time in clock ticks.
        return {"start": stat.rsplit(")", 1)[1].split()[19],
                "cmdline": [part.decode(errors="replace") for part in command.split(b"\0") if part]}
    try:
        shown = subprocess.run(["ps", "-o", "lstart=", "-o", "command=", "-p", str(pid)], capture_output=True,
                               text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    # lstart is five fields (e.g. "Mon Jan  1 00:00:00 2026"); the command line follows.
    fields = shown.split()
    return {"start": " ".join(fields[:5]), "cmdline": fields[5:]} if len(fields) > 5 else None


def _runner(path: Path) -> int | None:
    """The pid of this job's runner if it is running now and is the process that wrote ``pid.json`` (same start
    time and command line, which names this job's folder); else None."""
    recorded = _read(path / PID)
    if not isinstance(recorded, dict):
        return None
    pid = recorded.get("pid")
    live = process_identity(pid)
    if live is None or live["start"] != recorded.get("start") or live["cmdline"] != recorded.get("cmdline"):
        return None
    return pid if str(path.resolve()) in live["cmdline"] else None


def load(path: Path) -> Job:
    """Read one job folder; a job whose files do not read back is reported as lost, never as running.

    Raises:
        OSError, ValueError: ``job.json`` is missing, not a regular file, too large or not a JSON object (not a job).
    """
    spec = json.loads(read_file(path / SPEC).decode("utf-8"))
    if not isinstance(spec, dict):
        raise ValueError(f"{path / SPEC} is not a job record")
    cancelled = (path / CANCELLED).exists()
    if (path / EXIT).exists():
        ended = _read(path / EXIT)
        code = ended.get("returncode") if isinstance(ended, dict) else None
        if not isinstance(code, int) or isinstance(code, bool):
            return Job(path.name, path, spec, "cancelled" if cancelled else "lost", None)
        status = "cancelled" if cancelled else "succeeded" if code == 0 else "failed"
        return Job(path.name, path, spec, status, code)
    if not (path / PID).exists():
        age = time.time() - (path / SPEC).stat().st_mtime
        waiting = -CLOCK_SLACK_S <= age < START_GRACE_S
        return Job(path.name, path, spec, ("cancelling" if cancelled else "starting") if waiting else "lost", None)
    if _runner(path) is not None:
        return Job(path.name, path, spec, "cancelling" if cancelled else "running", None)
    return Job(path.name, path, spec, "cancelled" if cancelled else "lost", None)


def list_jobs(root: str, limit: int = MAX_JOBS) -> list[Job]:
    """The newest ``limit`` jobs under ``root/jobs``, newest first; folders that are not jobs are ignored."""
    directory = jobs_dir(root)
    found = []
    names = sorted((entry.name for entry in os.scandir(directory) if entry.is_dir()), reverse=True) \
        if directory.is_dir() else []
    for name in names:
        if len(found) >= limit:
            break
        path = directory / name
        if (path / SPEC).is_file():
            try:
                found.append(load(path))
            except (OSError, ValueError):
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


def launch(root: str, args: list[str], label: str, request: dict | None = None, max_active: int = 1,
           spec: str | None = None) -> Job:
    """Start ``python -m compute ARGS`` as a detached job under ``root/jobs``.

    Args:
        root: the artifact root; the job's files and everything the command writes stay under it.
        args: the arguments after ``python -m compute`` (no shell is involved).
        label: a short description for the page.
        request: what the page asked for, kept with the job to show its results later.
        max_active: refuse while this many jobs are starting or running.
        spec: a spec file's text (``contract.specs``): written into the job's folder as ``SPEC_FILE`` and passed as
            ``--spec PATH``.

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
        if spec is not None:
            (path / SPEC_FILE).write_text(spec, encoding="utf-8")
            args = [*args, f"--spec={path.resolve() / SPEC_FILE}"]
        write_json(path / SPEC, {"job_id": job_id, "args": list(args), "label": label, "request": request or {},
                                  "root": root if is_url(root) else str(Path(root).resolve()), "created_at": now(),
                                  "user": launched_by()})
        process = subprocess.Popen([sys.executable, "-m", "locolab.dashboard.job_runner", str(path)], cwd=REPO,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        # Reap the runner when it ends, so it does not linger as a zombie of the dashboard.
        threading.Thread(target=process.wait, daemon=True).start()
        return load(path)


def cancel(job: Job) -> None:
    """Ask a job to stop: its runner and command get SIGTERM (the runner kills the command if it lingers); a runner
    not ready yet finds the mark and does not start the command. Only a verified runner (``load``) that leads its
    own process group, not this process's, is signalled."""
    # Renamed into place: a planted named pipe or link under the mark's name is replaced, never opened or followed.
    atomic_write(job.path / CANCELLED, lambda file: file.write(now().encode()))
    pid = _runner(job.path)
    if pid is None:
        return
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    if group == pid and group != os.getpgrp():
        os.killpg(group, signal.SIGTERM)
