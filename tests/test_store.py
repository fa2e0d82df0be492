"""The artifact store: atomic writes, versioned schema, tolerant reads and the localization queries."""

import os
import socket
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from locolab.contract import store, summaries
from locolab.contract.errors import UserError
from locolab.contract.store import SCHEMAS, Store, write_table
from locolab.contract.summaries import localization, minimal_windows

MODEL = "CompVis/stable-diffusion-v1-4"


def _score(case_id, kind, score, seed=0, start=None, size=None, run_id="run1",
           scorer_id="openai/clip-vit-base-patch16"):
    return dict(case_id=case_id, run_id=run_id, model=MODEL, family="style", concept="van gogh", kind=kind,
                window_start=start, window_size=size, seed=seed, scorer_id=scorer_id, score_text="style of van gogh",
                score=score)


def _files(directory):
    return sorted(name for _, _, names in os.walk(directory) for name in names)


def test_write_table_leaves_only_the_final_file(tmp_path):
    paths = write_table("scores", [_score("a", "original", 0.75)], "run1-0-0", root=tmp_path)

    assert paths == [f"{tmp_path}/tables/scores/model=CompVis%2Fstable-diffusion-v1-4/family=style/"
                     "part-run1-0-0.parquet"]
    assert _files(tmp_path) == ["part-run1-0-0.parquet"]
    assert pq.read_table(paths[0]).to_pylist() == [dict(schema_version=3, **_score("a", "original", 0.75),
                                                        method=None, component=None, noise=None, blocks=None,
                                                        site=None)]


def test_interrupted_write_leaves_no_file(tmp_path):
    def write_then_fail(file):
        file.write(b"PAR1 half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.atomic_write(tmp_path / "part-x.parquet", write_then_fail)

    assert _files(tmp_path) == []


def test_png_is_written_atomically_and_reads_back(tmp_path):
    image = Image.new("RGB", (4, 3), (10, 20, 30))
    path = store.join(tmp_path, store.image_relpath("run1", "case1"))

    store.write_png_atomic(path, image)

    assert _files(tmp_path) == ["case1.png"]
    assert Image.open(path).getpixel((3, 2)) == (10, 20, 30)


def test_writing_a_part_again_replaces_it(tmp_path):
    write_table("runs", [dict(run_id="run1", status="running")], "run1-0", root=tmp_path)
    write_table("runs", [dict(run_id="run1", status="finished")], "run1-0", root=tmp_path)

    rows = Store(tmp_path).connect().execute("SELECT run_id, status FROM runs").fetchall()

    assert rows == [("run1", "finished")]


def test_rows_are_split_by_partition(tmp_path):
    rows = [_score("a", "original", 0.5), dict(_score("b", "original", 0.5), family="objects")]

    paths = write_table("scores", rows, "run1-0-0", root=tmp_path)

    assert sorted(p.split("/")[-2] for p in paths) == ["family=objects", "family=style"]


def test_unknown_column_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown scores columns: \\['scroe'\\]"):
        write_table("scores", [dict(_score("a", "original", 0.5), scroe=1.0)], "run1-0-0", root=tmp_path)


def test_empty_root_gives_empty_typed_views(tmp_path):
    con = Store(tmp_path / "nothing-here").connect()

    for table, schema in SCHEMAS.items():
        assert [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()] == schema.names
        assert con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(0,)]
    assert localization(con).num_rows == 0


def test_files_without_newer_columns_read_them_as_null(tmp_path):
    directory = tmp_path / "tables" / "scores" / "model=m" / "family=f"
    directory.mkdir(parents=True)
    pq.write_table(pa.table({"schema_version": [1], "case_id": ["a"], "score": [0.5]}), directory / "part-old.parquet")

    rows = Store(tmp_path).connect().execute("SELECT case_id, scorer_id, score FROM scores").fetchall()

    assert rows == [("a", None, 0.5)]


def test_newer_schema_version_is_reported(tmp_path):
    write_table("scores", [_score("a", "original", 0.5)], "run1-0-0", root=tmp_path)
    directory = tmp_path / "tables" / "scores" / "model=m" / "family=f"
    directory.mkdir(parents=True)
    pq.write_table(pa.table({"schema_version": [4], "case_id": ["b"]}), directory / "part-new.parquet")

    with pytest.raises(UserError, match=r"newer LocoLab \(schema v4 > v3\); upgrade LocoLab"):
        Store(tmp_path).connect()


def test_corrupt_file_is_skipped_and_named(tmp_path):
    write_table("scores", [_score("a", "original", 0.5)], "run1-0-0", root=tmp_path)
    corrupt = tmp_path / "tables" / "scores" / "model=m" / "family=f" / "part-bad.parquet"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"PAR1 this is not a parquet file")

    db = Store(tmp_path)
    rows = db.connect().execute("SELECT case_id FROM scores").fetchall()

    assert rows == [("a",)]
    assert [path for path, _ in db.skipped] == [str(corrupt)]
    assert db.skipped[0][1].startswith("unreadable Parquet")


def test_temporary_files_are_not_read(tmp_path):
    write_table("scores", [_score("a", "original", 0.5)], "run1-0-0", root=tmp_path)
    directory = tmp_path / "tables" / "scores" / "model=m" / "family=f"
    directory.mkdir(parents=True)
    pq.write_table(store.conform("scores", [_score("b", "original", 0.5)]), directory / ".tmp-123-part-x.parquet")

    db = Store(tmp_path)
    rows = db.connect().execute("SELECT case_id FROM scores").fetchall()

    assert rows == [("a",)]
    assert db.skipped == []


def test_fsspec_root_writes_and_reads(tmp_path):
    root = f"memory://{tmp_path.name}"
    write_table("scores", [_score("a", "original", 0.5)], "run1-0-0", root=root)

    rows = Store(root).connect().execute("SELECT case_id, score FROM scores").fetchall()

    assert rows == [("a", 0.5)]


def test_root_defaults_to_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(store.ROOT_ENV, str(tmp_path))

    assert Store().root == str(tmp_path)


def _planted_sweep():
    """16 layers; the window 8-9 removes the style. Original 0.75, target 0.25 (gap 0.5, exact in binary).
    Single layers 8 or 9 remove a quarter of the gap, the pairs 7-8 and 9-10 half of it. Eight seeds."""
    rows = []
    for prompt in range(2):
        for seed, jitter in enumerate([-0.125, 0.125] * 4):
            rows.append(_score(f"orig-{prompt}-{seed}", "original", 0.75 + jitter, seed))
            rows.append(_score(f"target-{prompt}-{seed}", "target", 0.25 + jitter, seed))
    planted = {(1, 8): 0.625, (1, 9): 0.625, (2, 7): 0.5, (2, 8): 0.25, (2, 9): 0.5}
    for size in (1, 2):
        for start in range(16 - size + 1):
            for seed, jitter in enumerate([-0.125, 0.125] * 4):
                score = planted.get((size, start), 0.75) + jitter
                rows.append(_score(f"w{size}-{start}-{seed}", "window", score, seed, start, size))
    return rows


def test_localization_measures_the_planted_drops(tmp_path):
    write_table("scores", _planted_sweep(), "run1-0-0", root=tmp_path)

    table = localization(Store(tmp_path).connect()).to_pylist()

    assert len(table) == 16 + 15
    by_window = {(row["window_size"], row["window_start"]): row for row in table}
    assert by_window[(2, 8)]["score_mean"] == 0.25
    assert by_window[(2, 8)]["score_std"] == pytest.approx(0.125 * (8 / 7) ** 0.5)
    assert (by_window[(2, 8)]["n_seeds"], by_window[(2, 8)]["n_images"]) == (8, 8)
    assert {row["original_score"] for row in table} == {0.75}
    assert {row["target_score"] for row in table} == {0.25}
    assert [by_window[w]["normalized_drop"] for w in [(1, 7), (1, 8), (2, 7), (2, 8)]] == [0.0, 0.25, 0.5, 1.0]
    # 7-8 and 9-10 remove exactly half the gap in every seed: not more than the threshold 0.5, so they do not localize.
    assert sorted(w for w, row in by_window.items() if row["localizes"]) == [(2, 8)]


def test_minimal_window_is_the_smallest_size_then_the_largest_drop(tmp_path):
    write_table("scores", _planted_sweep(), "run1-0-0", root=tmp_path)
    con = Store(tmp_path).connect()

    default = minimal_windows(con).to_pylist()
    lenient = minimal_windows(con, threshold=0.2).to_pylist()
    strict = minimal_windows(con, threshold=1.5).to_pylist()

    assert [(r["window_size"], r["window_start"], r["normalized_drop"]) for r in default] == [(2, 8, 1.0)]
    assert default[0]["threshold"] == 0.5
    assert [(r["window_size"], r["window_start"]) for r in lenient] == [(1, 8)]
    assert strict == []


def test_a_case_scored_by_two_runs_counts_once(tmp_path):
    rows = _planted_sweep()
    write_table("scores", rows, "run1-0-0", root=tmp_path)
    write_table("scores", [dict(row, run_id="run2") for row in rows[:4]], "run2-0-0", root=tmp_path)

    table = localization(Store(tmp_path).connect()).to_pylist()

    assert {row["n_images"] for row in table} == {8}
    assert {row["original_score"] for row in table} == {0.75}


def test_localization_can_be_restricted_to_runs(tmp_path):
    write_table("scores", _planted_sweep(), "run1-0-0", root=tmp_path)

    assert localization(Store(tmp_path).connect(), run_ids=["run1"]).num_rows == 31
    with pytest.raises(UserError, match="no locogen scores for run run2: use a run id of the root"):
        localization(Store(tmp_path).connect(), run_ids=["run2"])


def test_trace_effects_measure_recovery_and_stay_out_of_localization(tmp_path):
    trace = dict(method="trace-unet", component="cross-attention", noise=3.0)
    rows = [{**_score(f"o{seed}", "original", 0.75, seed), **trace} for seed in (0, 1)]
    rows += [{**_score(f"c{seed}", "corrupted", 0.25, seed), **trace} for seed in (0, 1)]
    rows += [{**_score(f"r{site}-{seed}", "restored", 0.25 + 0.125 * site, seed), "site": site, **trace}
             for site in range(3) for seed in (0, 1)]
    write_table("scores", _planted_sweep() + rows, "run1-0-0", root=tmp_path)
    con = Store(tmp_path).connect()

    effects = summaries.trace_effects(con).to_pylist()
    assert [(row["site"], row["recovery"]) for row in effects] == [(0, 0.0), (1, 0.25), (2, 0.5)]
    assert {(row["original_score"], row["corrupted_score"], row["n_seeds"]) for row in effects} == {(0.75, 0.25, 2)}
    assert localization(con).num_rows == 31


def test_trace_effects_carry_intervals_a_noise_floor_and_whether_the_run_is_partial(tmp_path):
    """Eight seeds, each moving its images together by +-0.05; site 1 restores half the gap in every seed (recovery
    0.5 exactly, a point interval), site 2 half of it on average (0.25 or 0.75 of it in alternate seeds). The run's
    record says it is still running."""
    trace = dict(method="trace-unet", component="cross-attention", noise=3.0, run_id="trace1")
    rows = []
    for seed in range(8):
        shift = 0.05 * (-1) ** seed
        rows += [{**_score(f"o{seed}", "original", 0.75 + shift, seed), **trace},
                 {**_score(f"c{seed}", "corrupted", 0.25 + shift, seed), **trace},
                 {**_score(f"r1-{seed}", "restored", 0.5 + shift, seed), "site": 1, **trace},
                 {**_score(f"r2-{seed}", "restored", 0.25 + (0.125 if seed % 2 else 0.375) + shift, seed), "site": 2,
                  **trace}]
    write_table("scores", rows, "trace1-0-0", root=tmp_path)
    write_table("runs", [dict(run_id="trace1", model=MODEL, status="running", shard=0, num_shards=1,
                              method="trace-unet")], "trace1-0", root=tmp_path)

    effects = {row["site"]: row for row in summaries.trace_effects(Store(tmp_path).connect()).to_pylist()}

    assert (effects[1]["recovery"], effects[1]["recovery_low"], effects[1]["recovery_high"]) == pytest.approx(
        (0.5, 0.5, 0.5))
    assert effects[2]["recovery"] == pytest.approx(0.5)
    assert effects[2]["recovery_low"] < 0.5 < effects[2]["recovery_high"]
    assert (effects[2]["n_units"], effects[2]["traceable"], effects[2]["partial"]) == (8, True, True)
    assert effects[2]["gap_low"] == pytest.approx(0.5) == effects[2]["gap_high"]


def test_contribution_sites_carry_t_intervals_and_whether_a_run_is_partial(tmp_path):
    """Four images of one site contribute 1, 2, 3 and 4: mean 2.5, s.d. 1.29, 95% t interval 2.5 -+ 3.182 * 1.29 / 2."""
    write_table("contributions", [dict(case_id=f"c{seed}", run_id="c1", model=MODEL, family="style",
                                       concept="van gogh", seed=seed, component="cross-attention", site=5,
                                       contribution=1.0 + seed) for seed in range(4)], "c1-0-0", root=tmp_path)
    write_table("runs", [dict(run_id="c1", model=MODEL, status="running", shard=0, num_shards=1,
                              method="attention-contribution")], "c1-0", root=tmp_path)

    (site,) = summaries.contribution_map(Store(tmp_path).connect()).to_pylist()

    half = 3.182446 * (5 / 3) ** 0.5 / 2
    assert (site["contribution"], site["contribution_low"], site["contribution_high"]) == pytest.approx(
        (2.5, 2.5 - half, 2.5 + half), abs=1e-5)
    assert site["partial"]


def test_existing_case_ids_filter_by_scorer(tmp_path):
    write_table("scores", [_score("a", "original", 0.5), _score("b", "original", 0.5, scorer_id="other")],
                "run1-0-0", root=tmp_path)

    assert store.existing_case_ids(tmp_path) == {"a", "b"}
    assert store.existing_case_ids(tmp_path, scorer_id="openai/clip-vit-base-patch16") == {"a"}
    assert store.existing_case_ids(tmp_path, run_id="run2") == set()


def test_reading_the_store_does_not_import_torch():
    code = "import sys, contract.store, contract.summaries; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    assert result.stdout.strip() == "False"


def test_stale_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    host = socket.gethostname().replace("-", "_")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".tmp-{host}-{dead_pid}-abc-x.png"
    live = tmp_path / f".tmp-{host}-{os.getpid()}-abc-y.png"
    other_host = tmp_path / f".tmp-elsewhere-{dead_pid}-abc-z.png"
    for path in (stale, live, other_host):
        path.write_bytes(b"partial")
    assert store.remove_stale_temps(tmp_path) == [str(stale)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other_host.name])


def test_verify_never_moves_a_file_outside_the_root(tmp_path):
    """A crafted row naming an image outside the root damages its unit, but repair moves only the unit's parts."""
    from locolab.compute.verify import find_damage, repair

    outside = tmp_path / "precious.png"
    outside.write_bytes(b"not a png, and not LocoLab's")
    root = tmp_path / "root"
    case = dict(case_id="c", run_id="r", model="m", family="f", concept="c", kind="original", seed=0)
    write_table("cases", [dict(case, image_path=str(outside))], "u1", root=root)
    write_table("scores", [dict(case, scorer_id="s", score=0.5)], "u1", root=root)

    (damage,) = find_damage(root).damage
    moved = repair(root, damage=[damage])

    assert "its path leaves the root" in damage.problem
    assert sorted(p.name for p in moved.rglob("*.parquet")) == ["part-u1.parquet"] * 2
    assert outside.read_bytes() == b"not a png, and not LocoLab's"
