"""Job files as anyone who can write the root may leave them: a job.json dated in the future, named pipes and
oversized files under the names of job files. Reading them back never blocks and never keeps a job active."""

import json
import os
import threading
import time

import pytest

from locolab.contract.names import JOB_STATUS
from locolab.dashboard import jobs


def plant(root, job_id: str = "20990101-000000-dddddd", **files):
    """A job folder with job.json plus ``files`` (name -> JSON value, bytes, or None for a named pipe)."""
    path = jobs.jobs_dir(str(root)) / job_id
    path.mkdir(parents=True)
    jobs.write_json(path / jobs.SPEC, {"job_id": job_id, "args": ["edit"], "label": "planted"})
    for name, value in files.items():
        if value is None:
            os.mkfifo(path / name)
        else:
            (path / name).write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())
    return path


def unblock(path) -> None:
    """Open every named pipe in the job folder for writing once, so that a reader blocked on one returns."""
    for entry in path.iterdir():
        if entry.is_fifo():
            try:
                os.close(os.open(entry, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader waiting
                pass


def within(seconds: float, function, path):
    """``function()``'s value, failing the test when it has not returned within ``seconds`` (a blocked read)."""
    found = {}

    def call():
        try:
            found["value"] = function()
        except Exception as error:  # noqa: BLE001 - handed to the test
            found["error"] = error

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    blocked = thread.is_alive()
    unblock(path)
    thread.join(5)
    assert not blocked, f"{function} blocked for {seconds} s"
    if "error" in found:
        raise found["error"]
    return found["value"]


def test_a_job_json_dated_in_the_future_without_a_pid_is_lost_and_blocks_nothing(tmp_path):
    path = plant(tmp_path)
    future = time.time() + 86_400
    os.utime(path / jobs.SPEC, (future, future))

    assert jobs.load(path).status == "lost"
    assert not [job for job in jobs.list_jobs(str(tmp_path)) if job.active]


@pytest.mark.parametrize(("age", "status"), [(0, "starting"), (-3, "starting"), (jobs.START_GRACE_S + 1, "lost")])
def test_a_job_without_a_pid_is_starting_only_within_its_grace(tmp_path, age, status):
    path = plant(tmp_path)
    then = time.time() - age
    os.utime(path / jobs.SPEC, (then, then))

    assert jobs.load(path).status == status


@pytest.mark.parametrize("name", [jobs.PID, jobs.EXIT])
def test_a_named_pipe_as_pid_or_exit_file_is_a_lost_job_read_without_blocking(tmp_path, name):
    path = plant(tmp_path, **{name: None})

    job = within(5, lambda: jobs.load(path), path)

    assert (job.status, job.returncode) == ("lost", None)
    assert within(5, lambda: [j.status for j in jobs.list_jobs(str(tmp_path))], path) == ["lost"]


def test_a_named_pipe_as_status_or_log_reads_as_nothing_yet(tmp_path):
    path = plant(tmp_path, **{JOB_STATUS: None, jobs.LOG: None})
    job = jobs.load(path)

    assert within(5, job.report, path) == {}
    assert within(5, job.result, path) == {}
    assert within(5, job.log, path) == ""


def test_a_named_pipe_as_job_json_is_not_a_job(tmp_path):
    path = plant(tmp_path)
    (path / jobs.SPEC).unlink()
    os.mkfifo(path / jobs.SPEC)

    with pytest.raises(OSError, match="is not a regular file"):
        within(5, lambda: jobs.load(path), path)
    assert within(5, lambda: jobs.list_jobs(str(tmp_path)), path) == []


def test_a_job_file_larger_than_the_cap_is_not_read(tmp_path):
    padded = {"returncode": 0, "padding": "x" * jobs.MAX_FILE_BYTES}
    path = plant(tmp_path, **{jobs.EXIT: padded})

    assert jobs.load(path).status == "lost"  # a whole exit.json saying 0 would be "succeeded"
    (path / jobs.EXIT).write_text(json.dumps({"returncode": 0}))
    assert jobs.load(path).status == "succeeded"
    (path / "eleven").write_bytes(b"x" * 11)
    assert jobs.read_file(path / "eleven", 11) == b"x" * 11
    with pytest.raises(OSError, match="eleven is larger than 10 bytes"):
        jobs.read_file(path / "eleven", 10)


def test_the_log_shows_its_last_characters_only(tmp_path):
    path = plant(tmp_path, **{jobs.LOG: b"first line\n" + b"y" * 50 + b"\nlast\rlast line"})

    assert jobs.load(path).log(limit=20) == "y" * 5 + "\nlast line"


@pytest.mark.parametrize("planted", ["pipe", "link"])
def test_cancel_replaces_a_planted_mark_without_opening_or_following_it(tmp_path, planted):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    path = plant(tmp_path)
    if planted == "pipe":
        os.mkfifo(path / jobs.CANCELLED)
    else:
        (path / jobs.CANCELLED).symlink_to(outside)

    within(5, lambda: jobs.cancel(jobs.load(path)), path)

    assert (path / jobs.CANCELLED).is_file() and not (path / jobs.CANCELLED).is_symlink()
    assert outside.read_text() == "keep"
    assert jobs.load(path).status == "cancelling"
