"""Edit jobs: launched from the Run-an-edit page as separate processes, followed through their files, one at a time,
cancellable; and the checks on what a request may name."""

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dashboard_fixtures import MAIN, copy_root, real_root
from streamlit import config
from streamlit.testing.v1 import AppTest

from locolab.contract.catalog.registry import MODELS
from locolab.contract.errors import UserError
from locolab.contract.names import JOB_STATUS
from locolab.contract.specs import EditSpec, EvalSpec, read_edit_job
from locolab.dashboard import jobs
from locolab.dashboard.edit_form import EditRequest

pytestmark = pytest.mark.slow  # real background jobs (subprocesses) launched from the page

config.set_option("client.showErrorDetails", "full")
# An edit whose evaluation takes minutes: long enough to be cancelled while running (with --artifacts: the runner
# works in the repository, whose artifacts/ would otherwise be the root).
SLOW = ["edit", "--model=tiny-sd1", "--family=style", "--concept=monet", "--layers=8,9", "--eval", "--seeds=0,1,2,3",
        "--steps=50"]


@pytest.fixture(scope="session")
def root(tmp_path_factory):
    return real_root(tmp_path_factory)


def open_page(monkeypatch, root) -> AppTest:
    """A fresh session on Run an edit, as after a reload or a dashboard restart."""
    monkeypatch.setenv("LOCOLAB_ARTIFACTS", str(root))
    app = AppTest.from_file(str(MAIN), default_timeout=60).run()
    app.switch_page("views/run_edit.py").run()
    assert not app.exception, app.exception[0].value if app.exception else None
    return app


def wait_for(condition, timeout: float, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s")


@pytest.mark.heavy  # 15 s or more under make test's load: make test-heavy
def test_an_edit_launched_from_the_page_runs_and_its_results_appear(monkeypatch, tmp_path, root):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job inherits it: quicker on a busy 2-core machine
    mine = copy_root(root, tmp_path / "root")
    app = open_page(monkeypatch, mine)
    app.selectbox(key="run_model").set_value("tiny-sd1").run()
    app.multiselect(key="run_layers_tiny-sd1_style_van gogh").set_value([4, 5])
    app.number_input(key="run_lambda_loco").set_value(0.1)
    app.text_input(key="run_seeds").set_value("0")
    app.number_input(key="run_steps").set_value(2)
    app.number_input(key="run_size").set_value(32)
    app.number_input(key="run_unrelated_tiny-sd1_van gogh").set_value(2)
    app.radio(key="run_positions_tiny-sd1").set_value("subject+padding")
    app.checkbox(key="run_preserve_tiny-sd1").check()

    app.button(key="launch").click().run()

    job = jobs.list_jobs(str(mine))[0]
    # The form builds the edit's and the evaluation's specs; the job runs them from a file in its folder.
    spec_file = job.path.resolve() / jobs.SPEC_FILE
    assert job.spec["args"] == ["edit", f"--artifacts={mine}", f"--spec={spec_file}"]
    edit, evaluation = read_edit_job(spec_file.read_text())
    assert edit == EditSpec("tiny-sd1", "style", "van gogh", target="a painting", layers=(4, 5), lam=0.1,
                            positions="subject+padding", preserve_others=True)
    assert evaluation == EvalSpec(seeds=(0,), steps=2, size=32, unrelated=2)
    assert job.status in ("starting", "running")
    assert app.get("progress") and app.button(key=f"cancel_{job.job_id}")
    # The log box wraps: the command line is longer than the box and was cut.
    assert app.code[0].value.startswith("$ python -m locolab edit") or app.code[0].value == "(no output yet)"
    assert app.code[0].proto.wrap_lines
    # Every poll is a new session: the job's state lives in its files, not in the page that launched it.
    done = wait_for(lambda: (page := open_page(monkeypatch, mine)).markdown[0].value.endswith("**succeeded**")
                    and page, timeout=300, step=2)
    edit_id = next(s.value for s in done.subheader if s.value.startswith("Result: ")).removeprefix("Result: ")
    assert edit_id.startswith("van-gogh-loco-")
    assert len(list((mine / "edits" / edit_id / "evals").glob("*/eval.json"))) == 1
    assert [m.label.split(" [")[0] for m in done.metric][:3] == ["score drop", "prompt rate", "image rate"]
    assert [b.key for b in done.get("download_button")] == ["result_zip"]
    # The first tab's before/after pairs, one compact grid: the 4 efficacy prompts x seed 0.
    (pairs,) = [html.proto.body for html in done.tabs[0].get("html")]
    assert re.findall(r'alt="(before|after) ', pairs) == ["before", "after"] * 4


def test_only_one_job_runs_at_a_time(tmp_path):
    job = jobs.launch(str(tmp_path), [*SLOW, f"--artifacts={tmp_path}"], "slow")
    try:
        with pytest.raises(UserError, match=f"job {job.job_id} is still (starting|running)"):
            jobs.launch(str(tmp_path), [*SLOW, f"--artifacts={tmp_path}"], "another")
    finally:
        jobs.cancel(job)
    wait_for(lambda: not jobs.load(job.path).active, timeout=30)
    assert [j.job_id for j in jobs.list_jobs(str(tmp_path))] == [job.job_id]


def test_the_cancel_button_stops_the_job(monkeypatch, tmp_path):
    job = jobs.launch(str(tmp_path), [*SLOW, f"--artifacts={tmp_path}"], "slow")
    wait_for(lambda: jobs.load(job.path).status == "running", timeout=30)
    app = open_page(monkeypatch, tmp_path)

    app.button(key=f"cancel_{job.job_id}").click().run()

    ended = wait_for(lambda: (j := jobs.load(job.path)).status == "cancelled" and j, timeout=30)
    assert ended.returncode < 0
    assert "[exit status -15]" in ended.log()


def test_a_job_whose_process_vanished_is_lost(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True)
    path = jobs.jobs_dir(str(tmp_path)) / "20260101-000000-abcdef"
    path.mkdir(parents=True)
    jobs.write_json(path / jobs.SPEC, {"job_id": path.name, "args": ["edit"], "label": "gone"})
    jobs.write_json(path / jobs.PID, {"pid": int(finished.stdout)})

    assert jobs.load(path).status == "lost"


def request(**changes) -> EditRequest:
    values = dict(model="tiny-sd1", family="style", concept="van gogh", target=None, layers=(8, 9))
    return EditRequest(**{**values, **changes})


def test_a_request_may_name_only_registered_or_stored_models():
    with pytest.raises(UserError, match="neither registered, allowed at launch"):
        request(model="../../elsewhere").job("/root", set(MODELS), 16)


def test_a_request_keeps_layers_inside_the_model():
    with pytest.raises(UserError, match=r"layers must lie in 0..15"):
        request(layers=(15, 16)).job("/root", set(MODELS), 16)


def test_a_value_starting_with_a_dash_stays_a_value():
    args, spec = request(concept="--help").job("/root", set(MODELS), 16)

    assert args == ["edit", "--artifacts=/root"] and read_edit_job(spec)[0].concept == "--help"


def test_a_diffquickfix_request_names_no_layers_and_passes_the_key_options():
    edit, _ = read_edit_job(request(method="diffquickfix", positions="subject", preserve_others=True).job(
        "/root", set(MODELS), 16)[1])

    assert (edit.method, edit.layers, edit.positions, edit.preserve_others) == ("diffquickfix", None, "subject", True)


def test_a_neuron_request_may_not_set_key_positions():
    with pytest.raises(UserError, match="closed-form methods only"):
        request(method="neuron", positions="subject").job("/root", set(MODELS), 16)


def plant(root, job_id: str, label: str = "planted", **files) -> Path:
    """A job folder as someone with write access to the root could leave it: job.json plus ``files`` (name -> JSON
    value, or bytes written as they are)."""
    path = jobs.jobs_dir(str(root)) / job_id
    path.mkdir(parents=True)
    jobs.write_json(path / jobs.SPEC, {"job_id": job_id, "args": ["edit"], "label": label})
    for name, value in files.items():
        (path / name).write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())
    return path


@pytest.mark.slow
def test_a_planted_pid_0_is_a_lost_job_that_blocks_nothing_and_cancel_signals_no_one(tmp_path):
    path = plant(tmp_path, "20990101-000000-aaaaaa", **{jobs.PID: {"pid": 0}})

    assert jobs.load(path).status == "lost"
    assert not [job for job in jobs.list_jobs(str(tmp_path)) if job.active]
    # Cancel from a process of its own group: had it signalled group 0 (its own), it would die of SIGTERM.
    cancel = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from dashboard import jobs; "
                             "jobs.cancel(jobs.load(Path(sys.argv[1]))); print('survived')", str(path)],
                            capture_output=True, text=True, timeout=60, start_new_session=True)
    assert (cancel.returncode, cancel.stdout.strip()) == (0, "survived"), cancel.stderr
    launched = jobs.launch(str(tmp_path), ["layers", "--model=tiny-sd1"], "not blocked")
    jobs.cancel(launched)
    assert wait_for(lambda: (job := jobs.load(launched.path)).status == "cancelled" and job, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("recorded", [
    lambda sleeper: {"pid": sleeper.pid},  # a live process this dashboard did not start, no identity
    lambda sleeper: {"pid": sleeper.pid, **jobs.process_identity(sleeper.pid)},  # its identity, not a runner's
    lambda sleeper: b"{not json",
    lambda sleeper: {"pid": 1},
    lambda sleeper: {"pid": "12"},
])
def test_pids_not_started_by_this_dashboard_are_not_running_and_are_never_signalled(tmp_path, recorded):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        path = plant(tmp_path, "20990101-000000-bbbbbb", **{jobs.PID: recorded(sleeper)})
        job = jobs.load(path)
        assert job.status == "lost"
        jobs.cancel(job)
        time.sleep(0.2)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_job_files_that_do_not_read_back_show_as_lost_on_the_page(monkeypatch, tmp_path):
    plant(tmp_path, "20990101-000000-cccccc", label="[click](http://evil.example) **bold**",
          **{jobs.EXIT: b"\x00\x01garbage", JOB_STATUS: ["not", "an", "object"]})

    app = open_page(monkeypatch, tmp_path)

    line = app.markdown[0].value
    assert line.endswith("**lost**")
    assert "\\[click\\](http\\://evil.example) \\*\\*bold\\*\\*" in line


@pytest.mark.parametrize("name", [jobs.PID, jobs.EXIT])
def test_a_named_pipe_as_a_job_file_neither_hangs_the_page_nor_blocks_launch(monkeypatch, tmp_path, name):
    path = plant(tmp_path, "20990101-000000-eeeeee")
    os.mkfifo(path / name)
    unblocked, done = threading.Event(), threading.Event()

    def unblock():  # each read blocked on the pipe (the defect) returns once someone opens it for writing
        done.wait(20)
        while not done.is_set():
            with contextlib.suppress(OSError):
                os.close(os.open(path / name, os.O_WRONLY | os.O_NONBLOCK))
                unblocked.set()
            done.wait(0.1)

    watchdog = threading.Thread(target=unblock, daemon=True)
    watchdog.start()
    try:
        app = open_page(monkeypatch, tmp_path)
    finally:
        done.set()
        watchdog.join()

    assert not unblocked.is_set(), f"the page blocked on the named pipe {name} until it was opened for writing"
    assert app.markdown[0].value.endswith("— **lost**")
    assert not app.button(key="launch").disabled


def test_a_job_dated_in_the_future_is_lost_and_does_not_disable_launch(monkeypatch, tmp_path):
    path = plant(tmp_path, "20990101-000000-ffffff")
    future = time.time() + 86_400
    os.utime(path / jobs.SPEC, (future, future))

    app = open_page(monkeypatch, tmp_path)

    assert app.markdown[0].value.endswith("— **lost**")
    assert not app.button(key="launch").disabled


def test_the_seeds_box_is_bounded(monkeypatch, tmp_path):
    app = open_page(monkeypatch, tmp_path)
    app.text_input(key="run_concept_text_style").set_value("van gogh").run()
    app.text_input(key="run_seeds").set_value(",".join(map(str, range(5001)))).run()

    app.button(key="launch").click().run()

    assert len(app.text_input(key="run_seeds").value) <= 2000  # the box itself takes no more
    assert app.error[0].value.endswith(" seeds\\: give at most 64")
    assert not jobs.list_jobs(str(tmp_path))


def test_the_edit_form_leaves_uce_on_every_layer_when_none_are_chosen():
    request = EditRequest("tiny-sd1", "style", "van gogh", None, (), method="uce")
    edit, _ = request.specs({"tiny-sd1"}, 16)
    assert edit.layers is None and edit.ridge == 0.5
