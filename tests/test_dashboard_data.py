"""The dashboard's data access: the same localization answers as the store, fresh data after new parts land, no
file read outside the root, no torch."""

import os
import subprocess
import sys

import pyarrow.compute as pc
import pytest
from dashboard_fixtures import PLANTED, PLANTED_SCORER, REPO, add_planted_run, copy_root, real_root

from locolab.contract import queries
from locolab.contract.store import Store, write_table
from locolab.contract.summaries import localization, minimal_windows, trace_effects
from locolab.dashboard import data
from locolab.dashboard.root import inside, launch_options


@pytest.fixture(scope="session")
def root(tmp_path_factory):
    return real_root(tmp_path_factory)


@pytest.fixture(scope="module")
def planted(root, tmp_path_factory):
    """The real root plus a newer, hand-written run with known answers (``add_planted_run``)."""
    mine = copy_root(root, tmp_path_factory.mktemp("planted") / "root")
    add_planted_run(mine)
    return mine


def _sweep_run(con) -> str:
    return next(r["run_id"] for r in queries.run_list(con).to_pylist() if r["config_name"] == "dashboard-test")


@pytest.mark.slow  # reads a real sweep and trace
@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.9])
def test_minimal_windows_agree_with_the_store(planted, threshold):
    con = Store(planted).connect()
    loc = queries.localization_table(con, PLANTED, 0.95)

    mine = queries.minimal_windows(loc, PLANTED_SCORER, threshold)

    columns = ["family", "concept", "window_start", "window_size", "normalized_drop", "drop_low"]
    expected = minimal_windows(con, threshold, [PLANTED]).select(columns).to_pylist()
    assert sorted(mine.select(columns).to_pylist(), key=str) == sorted(expected, key=str)
    # van gogh: window 8-9 removes the whole gap in every seed, layer 8 alone in three of four; blue is not measurable.
    assert [(r["concept"], r["window_size"], r["window_start"]) for r in expected] == [("van gogh", 2, 8)]


@pytest.mark.slow  # reads a real sweep and trace
def test_the_default_run_is_the_models_newest_finished_run(planted, tmp_path):
    con = Store(planted).connect()
    assert queries.default_run(queries.run_list(con), "tiny-sd1") == PLANTED
    later = copy_root(planted, tmp_path / "root")
    add_planted_run(later, status="running", run_id="later-run")
    runs = queries.run_list(Store(later).connect())
    assert runs["run_id"][0].as_py() == "later-run"  # newest first
    assert queries.default_run(runs, "tiny-sd1") == PLANTED


@pytest.mark.slow  # reads a real sweep and trace
def test_layer_cells_hold_every_window_of_the_size_in_family_order(root):
    con = Store(root).connect()
    loc = queries.localization_table(con, _sweep_run(con), 0.95)

    cells = queries.layer_cells(loc, "tiny-clip", 2, 0.5)

    assert cells.num_rows == 2 * 15
    assert list(dict.fromkeys(cells["family"].to_pylist())) == ["style", "color"]
    assert cells["window_start"].to_pylist()[:15] == list(range(15))
    # The sweep's two seeds are too few units: nothing is measurable, so nothing localizes.
    assert set(cells["measurable"].to_pylist()) == {False} and set(cells["localizes"].to_pylist()) == {False}


@pytest.mark.slow  # reads a real sweep and trace
def test_the_cells_localize_by_the_stores_rule(planted):
    con = Store(planted).connect()
    cells = queries.layer_cells(queries.localization_table(con, PLANTED, 0.95), PLANTED_SCORER, 1, 0.5)
    stored = {(r["concept"], r["window_start"]): r["localizes"]
              for r in localization(con, 0.5, [PLANTED]).to_pylist() if r["window_size"] == 1}
    assert {(r["concept"], r["window_start"]): r["localizes"] for r in cells.to_pylist()} == stored
    layer_8 = next(r for r in cells.to_pylist() if (r["concept"], r["window_start"]) == ("van gogh", 8))
    assert layer_8["normalized_drop"] == pytest.approx(0.75) and not layer_8["localizes"]


@pytest.mark.slow  # reads a real sweep and trace
def test_locogen_views_leave_the_trace_rows_out(root):
    con = Store(root).connect()

    references = queries.gallery(con, "tiny-sd1", "tiny-clip", "style", "van gogh", 1).filter(
        pc.field("kind") != "window")
    assert sorted(references["kind"].to_pylist()) == ["original", "original", "target", "target"]
    assert queries.window_sizes(con, "tiny-sd1", "style", "van gogh") == [1, 2]
    assert len(queries.layers(con, "tiny-sd1")) == 16 and len(queries.layers(con, "tiny-sd1", "text-encoder")) == 2


@pytest.mark.slow  # reads a real sweep and trace
def test_trace_cells_hold_the_stored_recoveries_in_family_order(root):
    con = Store(root).connect()
    stored = trace_effects(con).filter(pc.field("component") == "self-attention")
    run = queries.default_run(queries.run_list(con, "trace"), "tiny-sd1")

    cells = queries.trace_cells(queries.trace_table(con), run, "tiny-clip", "self-attention", 3.0)

    assert list(dict.fromkeys(cells["family"].to_pylist())) == ["style", "color"]
    key = ["family", "concept", "site", "recovery"]
    assert sorted(cells.select(key).to_pylist(), key=str) == sorted(stored.select(key).to_pylist(), key=str)


@pytest.mark.slow  # reads a real sweep and trace
def test_new_parts_show_up_in_the_next_snapshot(tmp_path, root):
    mine = str(copy_root(root, tmp_path / "root"))
    before = data.snapshot(mine)

    write_table("runs", [{"run_id": "later", "model": "tiny-sd1", "status": "running"}], "later-0", root=mine)
    after = data.snapshot(mine)

    assert after.fingerprint != before.fingerprint
    runs_before = data.query(before, queries.runs)["run_id"].to_pylist()
    assert "later" not in runs_before
    assert sorted(data.query(after, queries.runs)["run_id"].to_pylist()) == sorted(runs_before + ["later"])


@pytest.mark.slow  # reads a real sweep and trace
def test_unchanged_roots_reuse_their_snapshot(root):
    assert data.snapshot(str(root)) is data.snapshot(str(root))


@pytest.mark.parametrize("relpath", ["../outside.png", "/etc/hostname", "images/../../outside.png", "link/x.png"])
def test_paths_that_leave_the_root_are_refused(tmp_path, relpath):
    (tmp_path / "root").mkdir()
    (tmp_path / "outside.png").write_bytes(b"png")
    os.symlink(tmp_path, tmp_path / "root" / "link")
    (tmp_path / "x.png").write_bytes(b"png")

    assert inside(str(tmp_path / "root"), relpath) is None


def test_paths_inside_the_root_resolve(tmp_path):
    assert inside(str(tmp_path), "images/m/a.png") == tmp_path / "images" / "m" / "a.png"


def test_artifacts_flag_beats_the_environment(monkeypatch):
    monkeypatch.setenv("LOCOLAB_ARTIFACTS", "/from/env")

    assert launch_options(["--artifacts", "/from/flag"]).root == "/from/flag"
    assert (launch_options([]).root, launch_options([]).source) == ("/from/env", "$LOCOLAB_ARTIFACTS")


def test_unknown_arguments_are_ignored_and_defaults_are_local_and_single_job(monkeypatch):
    monkeypatch.delenv("LOCOLAB_ARTIFACTS", raising=False)

    options = launch_options(["-q", "tests/test_dashboard_data.py", "-k", "x"])

    assert (options.root, options.source, options.lock_root, options.max_jobs) == ("artifacts", "default", False, 1)


@pytest.mark.slow  # reads a real sweep and trace
def test_the_dashboard_never_imports_torch(root):
    script = ("import sys; from streamlit.testing.v1 import AppTest\n"
              "app = AppTest.from_file('dashboard/main.py', default_timeout=60).run()\n"
              "for page in ('layer_map', 'gallery', 'edits', 'run_edit'):\n"
              "    app.switch_page(f'views/{page}.py').run(); assert not app.exception, page\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers')))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "LOCOLAB_ARTIFACTS": str(root)})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
