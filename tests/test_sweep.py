"""Sweeps end to end on tiny-sd1: resume after kill -9, shards, reproducible scores, a planted localization."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from sweep_helpers import table, write_config

from locolab.compute.cli import main
from locolab.compute.models.loading import load_model
from locolab.compute.plan import build_plan
from locolab.compute.scoring import load_scorer
from locolab.compute.settings import Settings
from locolab.compute.sweep.config import load_config
from locolab.compute.sweep.run import run_units
from locolab.contract import store, summaries

pytestmark = pytest.mark.slow  # whole sweeps end to end: kill -9, shards, launcher processes, fsspec roots

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted, unsharded run of the small config."""
    tmp = tmp_path_factory.mktemp("reference")
    config = write_config(tmp / "small.yaml")
    assert main(["sweep", config, "--artifacts", str(tmp / "root"), "--no-progress"]) == 0
    return config, tmp / "root"


def test_run_writes_every_case_and_score(reference):
    _, root = reference
    cases, scores = table(root, "cases"), table(root, "scores")
    assert len(cases) == len(scores) == 54
    assert {row["kind"] for row in cases} == {"original", "target", "all-layers", "window"}
    assert all((root / row["image_path"]).is_file() for row in cases)
    assert [row["status"] for row in table(root, "runs")] == ["finished"]
    assert len(table(root, "layers")) == 16
    assert not list(root.rglob(".tmp-*"))


def test_layer_resolutions_follow_the_run_size(reference, load):
    """The small config runs tiny-sd1 at 32 px, half its default 64: every layer sees half the side."""
    _, root = reference
    stored = {row["index"]: row["resolution"] for row in table(root, "layers")}
    default = {layer.index: layer.resolution for layer in load("tiny-sd1").layers}
    assert default[0] == 16 and default[6] == 2
    assert stored == {index: side // 2 for index, side in default.items()}


@pytest.mark.slow
def test_several_scorers_in_one_pass_and_resume_per_scorer(reference, tmp_path, capsys):
    """Every image is scored by each scorer of the config, from the same images; a run killed between two scorers'
    parts resumes by scoring only what is missing."""
    config, single = reference
    both = write_config(tmp_path / "both.yaml", scorer=["tiny-clip", "toyworld-clip"])
    root = tmp_path / "root"
    assert main(["sweep", both, "--artifacts", str(root), "--no-progress"]) == 0
    scores = table(root, "scores")
    assert len(scores) == 2 * 54
    by_scorer = {s: sorted((r["case_id"], r["score"]) for r in scores if r["scorer_id"] == s)
                 for s in ("tiny-clip", "toyworld-clip")}
    assert by_scorer["tiny-clip"] == sorted((r["case_id"], r["score"]) for r in table(single, "scores"))
    assert [c for c, _ in by_scorer["toyworld-clip"]] == [c for c, _ in by_scorer["tiny-clip"]]
    assert {s for s in by_scorer} == {r["scorer_id"] for r in summaries.localization(
        store.Store(root).connect()).to_pylist()}
    [run] = table(root, "runs")
    assert json.loads(run["config_json"])["scorer"] == ["tiny-clip", "toyworld-clip"]
    parts = sorted(root.glob("tables/scores/*/*/part-*.parquet"))
    assert len(parts) == 2 * 3
    before = table(root, "scores")
    parts[0].unlink()
    capsys.readouterr()
    assert main(["sweep", both, "--artifacts", str(root), "--no-progress"]) == 0
    assert "1 units run, 2 already done; 0 images generated" in capsys.readouterr().out
    assert table(root, "scores") == before


def test_rerun_skips_finished_units(reference, capsys):
    config, root = reference
    before = {p: p.stat().st_mtime_ns for p in root.rglob("part-*.parquet") if {"cases", "scores"} & set(p.parts)}
    assert main(["sweep", config, "--artifacts", str(root), "--no-progress"]) == 0
    assert "0 units run, 3 already done; 0 images generated" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before


@pytest.mark.heavy  # the slow tier: make test-heavy
def test_resume_after_kill_9_gives_the_same_tables(reference, tmp_path):
    config, expected = reference
    root = tmp_path / "root"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "locolab", "sweep", config, "--artifacts", str(root),
                             "--no-progress", "--batch-size", "6"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(root.glob("images/*/*.png"))) < 8:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(table(root, "cases")) < 54, "the run finished before it was killed"
    assert main(["sweep", config, "--artifacts", str(root), "--no-progress"]) == 0
    for name in ("cases", "scores"):
        assert table(root, name) == table(expected, name)
    assert not list(root.rglob(".tmp-*"))


def test_two_shards_into_one_root_equal_one_run(reference, tmp_path):
    config, expected = reference
    root = str(tmp_path / "root")
    for shard in ("0/2", "1/2"):
        assert main(["sweep", config, "--artifacts", root, "--shard", shard, "--no-progress"]) == 0
    for name in ("cases", "scores"):
        assert table(root, name) == table(expected, name)
    assert sorted((r["shard"], r["num_shards"], r["status"]) for r in table(root, "runs")) == [
        (0, 2, "finished"), (1, 2, "finished")]


def test_scores_reproduce_from_stored_images(reference):
    _, root = reference
    rows = table(root, "scores")
    paths = {row["case_id"]: row["image_path"] for row in table(root, "cases")}
    scorer = load_scorer("tiny-clip")
    images = [np.asarray(Image.open(root / paths[r["case_id"]]).convert("RGB"), dtype=np.float32) / 255 for r in rows]
    again = scorer.score(np.stack(images), [r["score_text"] for r in rows])
    # float32 CLIP in another batch composition: equal to rounding, not bit for bit.
    np.testing.assert_allclose(again, [r["score"] for r in rows], rtol=0, atol=1e-6)


def test_localization_finds_the_only_layer_that_reads_text(tmp_path):
    """Plant the answer: zero the key/value projections of every layer but 9, so only it reads the prompt. Then
    every window holding layer 9 turns the image into the target image exactly (drop 1), every other window changes
    nothing (drop 0), and the minimal localizing window is layer 9 alone."""
    config = load_config(write_config(tmp_path / "c.yaml", window_sizes=[1, 2], families={
        "style": {"target": "a painting", "templates": ["a painting in the style of {concept}"],
                  "concepts": ["van gogh"]}}))
    model = load_model("tiny-sd1")
    with torch.no_grad():
        for index, module in enumerate(model.attentions):
            if index != 9:
                module.to_k.weight.zero_()
                module.to_v.weight.zero_()
    settings = Settings.defaults(model.spec, 2, 7.5, 32)
    units = build_plan(config, settings, 16)
    run_units(config, model, [load_scorer("tiny-clip")], units, settings, str(tmp_path / "root"), 6, False)
    con = store.Store(tmp_path / "root").connect()
    # One seed and the random scorer's small gap: the planted identity, not the noise rule, is under test here.
    rule = {"min_gap": 0.0, "min_units": 1, "meaningless_scorers": ()}
    drops = {(row["window_size"], row["window_start"]): row["normalized_drop"]
             for row in summaries.localization(con, **rule).to_pylist()}
    holding = {(1, 9), (2, 8), (2, 9)}
    # Images of one prompt agree to ~1e-6 across batch compositions, which can flip a few 8-bit pixel values of a
    # stored image; with the random scorer's small original-to-target gap that moves a drop by up to ~1%.
    assert all(drops[key] == pytest.approx(1.0, abs=0.02) for key in holding)
    assert all(drop == pytest.approx(0.0, abs=0.02) for key, drop in drops.items() if key not in holding)
    # One unit leaves the paired test no degrees of freedom: the identity is measured, nothing is decided.
    assert summaries.minimal_windows(con, **rule).num_rows == 0


@pytest.mark.heavy  # the slow tier: make test-heavy
def test_launcher_processes_split_the_plan(reference, tmp_path):
    """``accelerate launch`` / ``torchrun`` start one process per GPU with RANK and WORLD_SIZE set; each runs its
    own part of the plan and together they equal one run."""
    config, expected = reference
    root = tmp_path / "root"
    procs = [subprocess.Popen([sys.executable, "-m", "locolab", "sweep", config, "--artifacts", str(root),
                               "--no-progress"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "WORLD_SIZE": "2", "RANK": str(rank),
                                   "LOCAL_RANK": str(rank)})
             for rank in (0, 1)]
    errors = [proc.communicate(timeout=300)[1].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    for name in ("cases", "scores"):
        assert table(root, name) == table(expected, name)
    assert sorted((r["shard"], r["num_shards"]) for r in table(root, "runs")) == [(0, 2), (1, 2)]


def test_a_sweep_into_an_fsspec_root_equals_a_local_one(reference, capsys):
    """Object stores go through fsspec; ``memory://`` exercises the same code path without a network."""
    config, expected = reference
    root = "memory://locolab-sweep"
    assert main(["sweep", config, "--artifacts", root, "--no-progress"]) == 0
    for name in ("cases", "scores"):
        assert table(root, name) == table(expected, name)
    capsys.readouterr()
    assert main(["sweep", config, "--artifacts", root, "--no-progress"]) == 0
    assert "0 units run, 3 already done" in capsys.readouterr().out


def test_sweeps_with_different_steps_are_summarized_apart_and_refused_together(reference, tmp_path, capsys):
    config, source = reference
    root = shutil.copytree(source, tmp_path / "root")
    other = write_config(tmp_path / "steps3.yaml", steps=3)
    assert main(["sweep", other, "--artifacts", str(root), "--no-progress"]) == 0
    runs = sorted({load_config(config).run_id, load_config(other).run_id})
    summary = summaries.concept_summary(store.Store(root).connect()).to_pylist()
    assert sorted({row["run_id"] for row in summary}) == runs
    assert len(summary) == 2 * 3  # each run's three concepts, on their own
    capsys.readouterr()
    assert main(["summary", *runs, "--artifacts", str(root)]) == 2
    steps = {load_config(config).run_id: 2, load_config(other).run_id: 3}
    err = capsys.readouterr().err.strip()
    assert err == (f"error: cannot pool 2 runs: runs {runs[0]} and {runs[1]} differ in steps ({runs[0]}: "
                   f"{steps[runs[0]]}; {runs[1]}: {steps[runs[1]]}); summarize each run on its own")


def test_the_tiny_sd1_summary_localizes_nothing_and_says_why(reference, capsys):
    _, root = reference
    capsys.readouterr()
    assert main(["summary", "--artifacts", str(root)]) == 0
    out = capsys.readouterr().out
    assert "0 of 3 concepts localized; 3 not measurable" in out
    assert out.count("not measurable: 1 prompt x seed unit, at least 8 are needed to measure noise") == 3
    rows = summaries.localization(store.Store(root).connect()).to_pylist()
    assert rows and not any(row["localizes"] for row in rows)


def test_the_all_layers_reference_is_bit_identical_to_the_target_on_tiny_sd1(reference):
    _, root = reference
    images = {(r["family"], r["prompt"], r["seed"], r["kind"]): r["image_path"] for r in table(root, "cases")}
    scores = {(r["family"], r["concept"], r["seed"], r["kind"]): r["score"] for r in table(root, "scores")}
    pairs = [key[:3] for key in images if key[3] == "all-layers"]
    assert len(pairs) == 3
    for family, prompt, seed in pairs:
        all_layers = np.asarray(Image.open(root / images[family, prompt, seed, "all-layers"]))
        target = np.asarray(Image.open(root / images[family, prompt, seed, "target"]))
        assert np.array_equal(all_layers, target)
    assert all(scores[key[:3] + ("all-layers",)] == scores[key[:3] + ("target",)] for key in scores
               if key[3] == "target")
    assert {row["reference"] for row in summaries.localization(store.Store(root).connect()).to_pylist()} == {"target"}


def test_on_tiny_sdxl_the_all_layers_swap_has_drop_exactly_one_against_its_reference(tmp_path):
    config = write_config(tmp_path / "sdxl.yaml", model="tiny-sdxl", window_sizes=[70], families={
        "style": {"target": "a painting", "templates": ["a painting in the style of {concept}"],
                  "concepts": ["van gogh"]}})
    root = tmp_path / "root"
    assert main(["sweep", config, "--artifacts", str(root), "--no-progress"]) == 0
    (row,) = summaries.localization(store.Store(root).connect(), min_units=1, min_gap=0.0).to_pylist()
    assert (row["window_size"], row["window_start"], row["reference"]) == (70, 0, "all-layers")
    assert row["normalized_drop"] == 1.0
    # The plain target prompt also changes the pooled embedding the swap keeps: it is not the same image.
    assert row["all_layers_score"] != row["target_score"]
    assert [r["reference"] for r in table(root, "runs")] == ["all-layers"]


def _scramble_pages(path: Path) -> None:
    """Overwrite a Parquet file's data pages with random bytes, keeping its footer (and so its metadata) valid."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    end = len(data) - 8 - footer
    data[4:end] = np.random.default_rng(0).integers(0, 256, end - 4, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _images(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("images/*/*.png"))}


def _unit_parts(root: Path, table: str) -> list[Path]:
    """The table's unit parts in the plan's order (style/monet, style/van gogh and color/blue are one each)."""
    return sorted((root / "tables" / table).rglob("part-*.parquet"))


def _own_images(root: Path, unit: Path) -> list[str]:
    """Images of a unit's window cases (no other unit shares them), from its cases part."""
    return sorted({r["image_path"] for r in pq.read_table(unit).to_pylist() if r["kind"] == "window"})


@pytest.mark.slow
def test_verify_repair_then_resume_equals_an_undamaged_run(reference, tmp_path, capsys):
    config, expected = reference
    root = tmp_path / "root"
    shutil.copytree(expected, root)
    scores, cases = _unit_parts(root, "scores"), _unit_parts(root, "cases")
    _scramble_pages(scores[0])  # one unit: valid footer, garbage pages
    cases[2].write_bytes(cases[2].read_bytes()[:300])  # another: a cases part cut off
    garbled, deleted = _own_images(expected, sorted((expected / "tables" / "cases").rglob("*.parquet"))[1])[:2]
    (root / garbled).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # the third: one image garbled, one gone
    (root / deleted).unlink()
    foreign = root / "tables" / "scores" / "part-foreign.parquet"
    pq.write_table(pa.table({"schema_version": pa.array([1], pa.int32()), "score": ["high"]}), foreign)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname().replace("-", "_")
    debris = root / "tables" / "cases" / f".tmp-{host}-{dead.stdout.strip()}-x-part.parquet"
    debris.write_bytes(b"half")
    capsys.readouterr()

    assert main(["verify", "--artifacts", str(root)]) == 1
    report = capsys.readouterr().out
    assert "5 damaged" in report and "part-foreign.parquet" in report and "left by a writer" in report
    assert report.count("\n  unit ") == 3 and "2 image(s) damaged" in report
    assert "run `locolab verify --repair`" in report and f"locolab sweep CONFIG --artifacts {root}" in report
    assert main(["verify", "--repair", "--artifacts", str(root)]) == 0
    assert "moved the damaged files to" in capsys.readouterr().out
    assert not debris.exists() and not foreign.exists()
    assert len(list((root / "damaged").rglob("*.parquet"))) == 2 * 3 + 1  # three units' two parts, the foreign part
    assert main(["sweep", config, "--artifacts", str(root), "--no-progress"]) == 0

    assert "3 units run, 0 already done" in capsys.readouterr().out
    for name in ("cases", "scores"):
        assert table(root, name) == table(expected, name)
    assert _images(root) == _images(expected)
    assert main(["verify", "--artifacts", str(root)]) == 0
    assert "no damaged" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_redoes_only_units_whose_parts_or_images_are_damaged(reference, tmp_path, capsys):
    """Without verify: a unit is done only when its parts read back whole with one row per case and its images are
    present and not cut off (README: a rerun "redoes damaged ones"); a foreign Parquet file among the tables is
    skipped, not a reason to fail."""
    config, expected = reference
    root = tmp_path / "root"
    shutil.copytree(expected, root)
    _unit_parts(root, "cases")[0].write_bytes(b"PAR1 cut off")
    (root / _own_images(expected, _unit_parts(expected, "cases")[1])[0]).unlink()
    cut = root / _own_images(expected, _unit_parts(expected, "cases")[2])[0]
    cut.write_bytes(cut.read_bytes()[:-100])  # present, not whole
    pq.write_table(pa.table({"schema_version": pa.array([1], pa.int32()), "seed": ["zero"], "window_start": ["a"]}),
                   root / "tables" / "cases" / "part-foreign.parquet")
    capsys.readouterr()

    assert main(["sweep", config, "--artifacts", str(root), "--no-progress"]) == 0

    assert "3 units run, 0 already done" in capsys.readouterr().out
    for name in ("cases", "scores"):
        assert table(root, name) == table(expected, name)
    assert _images(root) == _images(expected)
