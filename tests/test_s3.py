"""A team root on a real object-store API: two shards sweep into one S3 bucket at once while the dashboard reads
it, one of them is killed and resumed, and an edit job launched from the page writes into the bucket; the bucket ends
with the same tables and images as a local root. The S3 server is moto's, started here on the loopback; LocoLab
reaches it through s3fs with the endpoint in ``AWS_ENDPOINT_URL``, as a team would point at MinIO or Ceph."""

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from PIL import Image
from sweep_helpers import table, write_config

pytest.importorskip("moto.server", reason="needs moto[server] (requirements-test.txt) for the loopback S3 server")
pytest.importorskip("s3fs", reason="needs s3fs (requirements-test.txt) to reach s3:// roots")

from dashboard_fixtures import MAIN  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from locolab.compute.cli import main  # noqa: E402
from locolab.compute.edit.store import load_edit  # noqa: E402
from locolab.contract import store  # noqa: E402
from locolab.dashboard import data, edit_records, jobs  # noqa: E402
from locolab.dashboard.files import RootFiles  # noqa: E402
from locolab.dashboard.root import WRITES_ENV  # noqa: E402

# An S3 server, whole sweeps in subprocesses and an edit job; the tests share them, so the slow tier
# (`make test-heavy`) keeps them on one xdist worker (--dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.heavy, pytest.mark.xdist_group("s3")]

REPO = Path(__file__).resolve().parent.parent
BUCKET = "locolab-team"
ROOT = f"s3://{BUCKET}/root"
# A request line in the server's log: method and path (werkzeug colours some lines).
REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)?([A-Z]+) (\S+) HTTP/')


@dataclass
class Server:
    env: dict[str, str]
    log: Path

    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request the server has answered so far."""
        return REQUEST.findall(self.log.read_text(errors="replace"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on the loopback, one per module, with one empty bucket; this process and every process it
    starts reach it through the standard AWS variables (test credentials, no profile, no instance metadata)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("s3") / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert server.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        with pytest.MonkeyPatch.context() as patch:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
                patch.delenv(name, raising=False)
            for name, value in env.items():
                patch.setenv(name, value)
            store.url_fs(f"s3://{BUCKET}")[0].mkdir(BUCKET)
            yield Server(env, log)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small study swept into a local folder, unsharded: what the bucket must end up holding."""
    tmp = tmp_path_factory.mktemp("local")
    config = write_config(tmp / "small.yaml")
    assert main(["sweep", config, "--artifacts", str(tmp / "root"), "--no-progress"]) == 0
    return config, tmp / "root"


@dataclass
class Look:
    """What the dashboard's data layer saw at one moment of the sweep."""

    error: str | None
    skipped: list
    runs: list[tuple]
    cases: int
    temporary: list[str]  # listed names of temporary files
    broken: list[str] = field(default_factory=list)  # images named by a cases row that did not read back whole


def look(root: str, checked: set[str]) -> Look:
    """Open the root as the dashboard does (a fresh listing, every part read whole) and read every image that a
    cases row names and was not read before."""
    data._remote_fingerprint.clear()  # as when the listing interval has passed
    snap = data.snapshot(root)
    listed = RootFiles(root).files_under("tables") + RootFiles(root).files_under("images")
    temporary = [name for name in listed if store.TMP_PREFIX in name]
    if snap.con is None:
        return Look(snap.error, snap.skipped, [], 0, temporary)
    with snap.lock:
        runs = sorted(snap.con.execute("SELECT shard, num_shards, status FROM runs").fetchall())
        paths = [path for (path,) in snap.con.execute("SELECT DISTINCT image_path FROM cases").fetchall()]
        cases = snap.con.execute("SELECT count(*) FROM cases").fetchone()[0]
    broken = []
    for path in sorted(set(paths) - checked):
        try:
            with Image.open(io.BytesIO(data.image_bytes(snap, path))) as image:
                image.verify()
            checked.add(path)
        except Exception as error:  # missing, cut off or not a PNG: PIL and fsspec raise several kinds
            broken.append(f"{path}: {type(error).__name__}")
    return Look(snap.error, snap.skipped, runs, cases, temporary, broken)


def _sweep(config: str, shard: str, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "locolab", "sweep", config, "--artifacts", ROOT, "--shard",
                                 shard, "--no-progress"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})


def test_a_write_that_fails_stores_nothing_and_a_replacement_is_whole(s3):
    folder = f"s3://{BUCKET}/atomic"

    def half(file):
        file.write(b"half of a part")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        store.atomic_write(f"{folder}/part.bin", half)
    assert store.list_names(folder) == set()
    store.atomic_write(f"{folder}/part.bin", lambda file: file.write(b"old"))
    store.atomic_write(f"{folder}/part.bin", lambda file: file.write(b"new, longer"))
    assert (store.list_names(folder), store.read_bytes(f"{folder}/part.bin")) == ({"part.bin"}, b"new, longer")
    assert [path for _, path in s3.requests() if "/atomic/" in path and store.TMP_PREFIX in path] == []


def test_files_that_another_process_stores_are_seen_at_once(s3):
    """s3fs caches a folder's listing and answers ``ls`` and ``exists`` from it; LocoLab turns that off, or a
    resuming shard or the dashboard would miss what the other shard stored since."""
    import s3fs

    folder = f"s3://{BUCKET}/listing"
    store.atomic_write(f"{folder}/a.png", lambda file: file.write(b"a"))
    assert store.list_names(folder) == {"a.png"} and not store.exists(f"{folder}/b.png")
    s3fs.S3FileSystem(skip_instance_cache=True).pipe_file(f"{BUCKET}/listing/b.png", b"b")  # another writer
    assert store.list_names(folder) == {"a.png", "b.png"} and store.exists(f"{folder}/b.png")
    assert RootFiles(f"s3://{BUCKET}").names("listing") == ["a.png", "b.png"]


def test_a_reader_keeps_the_version_of_a_part_it_listed(s3):
    """A connection shows each part as it was read when listed: a part replaced afterwards (a run's row rewritten
    when it finishes, a different size) neither breaks its queries nor shows half of each version."""
    root = f"s3://{BUCKET}/versions"
    row = {"run_id": "r", "model": "toyworld", "status": "running", "shard": 0, "num_shards": 1}
    store.write_table("runs", [row], "r-0of1", root=root)
    con = store.Store(root).connect()
    store.write_table("runs", [{**row, "status": "finished", "git_commit": "x" * 4000}], "r-0of1", root=root)
    assert con.execute("SELECT status, git_commit FROM runs").fetchall() == [("running", None)]
    again = store.Store(root).connect()
    assert again.execute("SELECT status, length(git_commit) FROM runs").fetchall() == [("finished", 4000)]


def _kill_on_first_image(proc: subprocess.Popen, stop: threading.Event) -> None:
    """SIGKILL ``proc`` as soon as the bucket holds an image (any shard's): it is then mid-sweep."""
    fs = store.url_fs(ROOT)[0]
    while not stop.is_set() and proc.poll() is None:
        if fs.find(f"{BUCKET}/root/images"):
            proc.send_signal(signal.SIGKILL)
            return
        time.sleep(0.1)


@pytest.fixture(scope="module")
def team(s3, reference, tmp_path_factory):
    """Shards 0/2 and 1/2 sweep into the bucket at once while the dashboard's data layer looks at it again and
    again; shard 1 is killed (SIGKILL) once the first image is stored and started again at once, beside shard 0."""
    config, _ = reference
    logs = tmp_path_factory.mktemp("shards")
    shards = {shard: _sweep(config, f"{shard}/2", s3.env, logs / f"shard{shard}.log") for shard in (0, 1)}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_on_first_image, args=(shards[1], stop))
    killer.start()
    looks, checked, killed = [], set(), None
    deadline = time.monotonic() + 540
    try:
        while time.monotonic() < deadline:
            if killed is None and shards[1].poll() is not None:
                killed = shards[1].returncode
                shards["resumed"] = _sweep(config, "1/2", s3.env, logs / "shard1-resumed.log")
            elif killed is not None and shards[0].poll() is not None and shards["resumed"].poll() is not None:
                break
            looks.append(look(ROOT, checked))
            time.sleep(0.5)
    finally:
        stop.set()
        killer.join()
        for proc in shards.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    looks.append(look(ROOT, checked))
    output = {path.name: path.read_text(errors="replace") for path in sorted(logs.iterdir())}
    return {"killed": killed, "codes": [shards[0].returncode, shards.get("resumed", shards[1]).returncode],
            "looks": looks, "output": output}


def test_two_shards_and_a_resume_give_the_local_tables_and_images(team, reference):
    assert team["killed"] == -signal.SIGKILL, team["output"]  # shard 1 was stopped mid-sweep, not finished
    assert team["codes"] == [0, 0], team["output"]
    resumed = team["output"]["shard1-resumed.log"]
    assert re.search(r"small-\w+: 1 units run, 0 already done", resumed), resumed
    _, local = reference
    for name in ("cases", "scores", "layers"):
        assert table(ROOT, name) == table(local, name)
    assert sorted((r["shard"], r["num_shards"], r["status"]) for r in table(ROOT, "runs")) == [
        (0, 2, "finished"), (1, 2, "finished")]
    paths = sorted({row["image_path"] for row in table(local, "cases")})
    assert len(paths) == len(list(local.glob("images/*/*.png"))) > 50  # every image of the local root
    assert [store.read_bytes(store.join(ROOT, path)) for path in paths] == [(local / path).read_bytes()
                                                                            for path in paths]


def test_the_dashboard_reading_during_the_writes_saw_only_whole_files(team):
    looks = team["looks"]
    assert len(looks) >= 3
    assert [look.error for look in looks] == [None] * len(looks)
    assert [look for look in looks if look.skipped or look.temporary or look.broken] == []
    # It looked while the shards ran (a shard's row says running until it finishes), and saw the rows grow.
    assert any((1, 2, "running") in look.runs for look in looks)
    counts = [look.cases for look in looks]
    assert counts == sorted(counts) and counts[-1] == 54 and any(0 < count < 54 for count in counts)


def test_no_request_ever_named_a_temporary_object(team, s3, reference):
    """On S3 a file is stored whole in one PUT under its final name: nothing is renamed (copied), so no temporary
    object exists for a reader to list or for a killed writer to leave behind."""
    requests = s3.requests()
    puts = [path for method, path in requests if method == "PUT"]
    assert len([path for path in puts if path.endswith(".parquet")]) >= 3 + 3 + 1 + 3  # cases, scores, layers, runs
    assert len([path for path in puts if path.endswith(".png")]) >= len(list(reference[1].glob("images/*/*.png")))
    assert [path for _, path in requests if store.TMP_PREFIX in path] == []


def open_page() -> AppTest:
    """A fresh session on Run an edit (the root and the write permission come from the environment)."""
    app = AppTest.from_file(str(MAIN), default_timeout=120).run()
    app.switch_page("views/run_edit.py").run()
    assert not app.exception, app.exception[0].value if app.exception else None
    return app


def test_an_edit_job_launched_with_allow_writes_stores_the_edit_in_the_bucket(team, reference, monkeypatch,
                                                                              tmp_path):
    """The page refuses jobs on a bucket served read-only; allowed to write, its edit job stores the edit and its
    evaluation in the bucket, the same bytes and rows as the same job run on a local root."""
    monkeypatch.setenv("LOCOLAB_ARTIFACTS", ROOT)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where an object-store root's job files live
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job inherits it: quicker on a busy machine
    monkeypatch.delenv(WRITES_ENV, raising=False)
    read_only = open_page()
    assert any("served read-only\\: jobs are disabled" in w.value for w in read_only.warning)
    assert read_only.button(key="launch").disabled

    monkeypatch.setenv(WRITES_ENV, "1")  # as `locolab dashboard --artifacts s3://... --allow-writes` sets it
    app = open_page()
    app.selectbox(key="run_model").set_value("tiny-sd1").run()
    app.multiselect(key="run_layers_tiny-sd1_style_monet").set_value([4, 5])
    app.number_input(key="run_lambda_loco").set_value(0.1)
    app.text_input(key="run_seeds").set_value("0")
    app.number_input(key="run_steps").set_value(2)
    app.number_input(key="run_size").set_value(32)
    app.number_input(key="run_unrelated_tiny-sd1_monet").set_value(2)
    app.button(key="launch").click().run()
    [job] = jobs.list_jobs(ROOT)
    spec_file = job.path.resolve() / jobs.SPEC_FILE
    assert job.spec["args"] == ["edit", f"--artifacts={ROOT}", f"--spec={spec_file}"]
    deadline = time.monotonic() + 400
    while (job := jobs.load(job.path)).active and time.monotonic() < deadline:
        time.sleep(1)
    assert job.status == "succeeded", job.log()
    edit_id, eval_id = job.result()["edit_id"], job.result()["eval_id"]

    local = tmp_path / "local"
    assert main(["edit", f"--artifacts={local}", f"--spec={spec_file}"]) == 0
    [record], skipped = edit_records.read_edits(ROOT)
    [here], _ = edit_records.read_edits(str(local))
    assert skipped == []
    moment = ("created_at", "seconds")
    assert {k: v for k, v in record.items() if k not in (*moment, "evals", "eval")} == {
        k: v for k, v in here.items() if k not in (*moment, "evals", "eval")}
    assert record["edit_id"] == edit_id and record["eval"]["eval_id"] == eval_id
    assert {k: v for k, v in record["eval"].items() if k != "created_at"} == {
        k: v for k, v in here["eval"].items() if k != "created_at"}
    remote, there = load_edit(ROOT, edit_id), load_edit(local, edit_id)
    assert remote.weights.keys() == there.weights.keys() and len(remote.weights) == 4  # to_k, to_v of layers 4, 5
    assert all(torch.equal(remote.weights[name], there.weights[name]) for name in remote.weights)
    scores = table(ROOT, "edit_scores")
    assert scores == table(local, "edit_scores") and len(scores) > 0
    images = sorted({row["image_path"] for row in scores})
    assert [store.read_bytes(store.join(ROOT, path)) for path in images] == [(local / path).read_bytes()
                                                                              for path in images]
