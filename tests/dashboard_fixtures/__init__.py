"""Artifact roots for the dashboard tests: a real tiny sweep, a real causal trace and a real attention-contribution
study of the same prompts and real tiny edits of one concept by all four methods (made once per test session, in
parallel), an empty root, and copies to break or to write into."""

import json
import os
import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
SWEEP_CONFIG = Path(__file__).with_name("sweep.yaml")
MAIN = REPO / "dashboard" / "main.py"
# Evaluation as small as it gets: one seed, two steps, 32 px, two unrelated prompts.
SMALL_EVAL = ["--seeds=0", "--steps=2", "--size=32", "--unrelated=2"]
EDIT = ["edit", "--model=tiny-sd1", "--family=style", "--concept=van gogh", "--target=a painting", "--eval",
        *SMALL_EVAL]

TRACE = ["trace", str(SWEEP_CONFIG), "--components=cross-attention,self-attention", "--no-progress"]
CONTRIBUTION = ["contribution", str(SWEEP_CONFIG), "--top-k=2", "--no-progress"]

_roots: dict[str, Path] = {}


def _compute(args: list[str], root: Path) -> subprocess.Popen:
    # One thread each: three torch processes with a thread per core each crawl on a shared 2-core machine (4x slower).
    return subprocess.Popen([sys.executable, "-m", "locolab", *args, f"--artifacts={root}"], cwd=REPO,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def real_root(tmp_path_factory) -> Path:
    """The session's root with a real tiny sweep (tiny-sd1, style/van gogh and color/blue, m = 1 and 2, seeds 0
    and 1), a causal trace of the same prompts (cross-attention and self-attention sites, text-encoder layers), an
    attention-contribution study of them (top-2 interventions) and four evaluated edits of van gogh: loco on layers
    8-9, all-layers, neuron on 8-9 and diffquickfix.

    Made once per test session: under pytest-xdist the first worker to ask makes it in the folder all workers
    share while the others wait on a lock (each worker making its own copy doubled the suite's heaviest fixture).
    Tests only read it; those that write take a ``copy_root``."""
    if "real" not in _roots:
        from filelock import FileLock

        base = tmp_path_factory.getbasetemp()
        shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
        root, done = shared / "real-root", shared / "real-root.done"
        with FileLock(str(shared / "real-root.lock")):
            if not done.exists():
                shutil.rmtree(root, ignore_errors=True)
                root.mkdir()
                processes = [_compute(["sweep", str(SWEEP_CONFIG), "--no-progress"], root),
                             _compute(TRACE, root),
                             _compute(CONTRIBUTION, root),
                             _compute([*EDIT, "--method=loco", "--layers=8,9"], root),
                             _compute([*EDIT, "--method=all-layers"], root),
                             _compute([*EDIT, "--method=neuron", "--layers=8,9"], root),
                             _compute([*EDIT, "--method=diffquickfix"], root)]
                for process in processes:
                    output = process.communicate(timeout=600)[0]
                    assert process.returncode == 0, f"{process.args} failed:\n{output}"
                done.touch()
        _roots["real"] = root
    return _roots["real"]


def copy_root(source: Path, destination: Path) -> Path:
    """A private copy of a root, for tests that add files to it."""
    shutil.copytree(source, destination)
    return destination


PLANTED = "planted-0123456789"
PLANTED_SCORER = "openai/clip-vit-base-patch16"  # a trained scorer's name: the built-in tiny-clip measures nothing


def add_planted_run(root: Path, status: str = "finished", run_id: str = PLANTED) -> str:
    """A second, newer LocoGen run of tiny-sd1 written by hand with known answers: eight seeds; van gogh (gap 0.5)
    loses the whole gap in window 8-9 in every seed, and in layer 8 alone in six of the eight seeds (a point drop of
    0.75 that the paired test does not carry above 0.5); blue's gap of 0.01 is not measurable. Returns the run id."""
    from locolab.contract.store import write_table

    scores, cases = [], []
    for family, concept, original in (("style", "van gogh", 0.75), ("color", "blue", 0.26)):
        for seed in range(8):
            jitter = 0.01 * (seed - 3.5)
            windows = {(1, start): original for start in range(16)}
            windows.update({(2, start): original for start in range(15)})
            if concept == "van gogh":
                windows[2, 8] = 0.25
                windows[1, 8] = 0.25 if seed < 6 else original
            kinds = [("original", None, None, original), ("target", None, None, 0.25), ("all-layers", 0, 16, 0.25)]
            kinds += [("window", start, size, score) for (size, start), score in windows.items()]
            for kind, start, size, score in kinds:
                common = dict(case_id=f"{run_id}|{concept}|{seed}|{kind}|{start}|{size}", run_id=run_id,
                              model="tiny-sd1", family=family, concept=concept, kind=kind, window_start=start,
                              window_size=size, seed=seed, method="locogen")
                scores.append({**common, "scorer_id": PLANTED_SCORER, "score_text": concept, "score": score + jitter})
                cases.append({**common, "prompt": f"a {concept} thing", "target": "a thing", "steps": 2,
                              "guidance": 7.5, "height": 32, "width": 32})
    write_table("scores", scores, run_id, root=root)
    write_table("cases", cases, run_id, root=root)
    write_table("runs", [dict(run_id=run_id, config_name="planted", model="tiny-sd1", status=status, shard=0,
                              num_shards=1, method="locogen", scheduler="PNDMScheduler", reference="target",
                              created_at=datetime.now(UTC))], f"{run_id}-0", root=root)
    return run_id


def add_corrupt_part(root: Path) -> Path:
    """A file with a Parquet name that is not Parquet, among the scores."""
    path = root / "tables" / "scores" / "model=tiny-sd1" / "family=style" / "part-corrupt.parquet"
    path.write_bytes(b"PAR1 not really a parquet file")
    return path


def add_newer_part(root: Path) -> Path:
    """A scores file stamped with a schema version from the future."""
    path = root / "tables" / "scores" / "model=tiny-sd1" / "family=style" / "part-future.parquet"
    pq.write_table(pa.table({"schema_version": pa.array([99], pa.int32()), "case_id": ["x"]}), path)
    return path


def add_foreign_part(root: Path) -> Path:
    """A Parquet file with a ``schema_version`` column whose other columns are of the wrong kind."""
    path = root / "tables" / "scores" / "model=tiny-sd1" / "family=style" / "part-foreign.parquet"
    pq.write_table(pa.table({"schema_version": pa.array([1], pa.int32()), "case_id": ["x"], "score": ["high"]}), path)
    return path


def scramble_pages(path: Path) -> Path:
    """Overwrite a Parquet file's data pages with random bytes, keeping its footer (and so its metadata) valid."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    end = len(data) - 8 - footer
    data[4:end] = bytes(random.Random(0).randrange(256) for _ in range(end - 4))
    path.write_bytes(bytes(data))
    return path


def add_scrambled_part(root: Path) -> Path:
    """One scores part of the sweep with garbage data pages behind a valid footer."""
    return scramble_pages(sorted((root / "tables" / "scores" / "model=tiny-sd1" / "family=style").glob("*.parquet"))[0])


def add_attacked_evaluation(root: Path) -> str:
    """A second, real evaluation of the loco edit with the recovery attack (2 steps), through ``eval-edit``.
    Returns the edit's id."""
    (summary_path,) = (root / "edits").glob("*-loco-*/evals/*/eval.json")
    edit_id = summary_path.parts[-4]
    process = _compute(["eval-edit", edit_id, *SMALL_EVAL, "--attack", "--attack-steps=2"], root)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    return edit_id


def add_damaged_summary(root: Path) -> Path:
    """One evaluation summary cut off mid-way."""
    path = sorted((root / "edits").glob("*-loco-*/evals/*/eval.json"))[0]
    path.write_text(path.read_text()[:40])
    return path


def add_second_evaluation(root: Path, steps: int) -> tuple[str, str]:
    """A second evaluation of the loco edit with other settings (``steps``), as ``eval-edit`` would store it beside
    the first: its own folder, summary and scores part. Returns (edit_id, eval_id)."""
    (summary_path,) = (root / "edits").glob("*-loco-*/evals/*/eval.json")
    edit_id, first = summary_path.parts[-4], summary_path.parts[-2]
    second = f"{first[:-1]}{'0' if first[-1] != '0' else '1'}"
    folder = summary_path.parent.with_name(second)
    shutil.copytree(summary_path.parent, folder)
    summary = json.loads(summary_path.read_text())
    summary.update(eval_id=second, steps=steps, efficacy_score_drop=0.25, created_at="2999-01-01T00:00:00+00:00")
    (folder / "eval.json").write_text(json.dumps(summary))
    scores = pq.read_table(root / "tables" / "edit_scores" / f"part-{edit_id}-{first}.parquet")
    scores = scores.set_column(scores.schema.get_field_index("eval_id"), "eval_id", pa.array([second] * len(scores)))
    scores = scores.set_column(scores.schema.get_field_index("steps"), "steps", pa.array([steps] * len(scores),
                                                                                         pa.int32()))
    pq.write_table(scores, root / "tables" / "edit_scores" / f"part-{edit_id}-{second}.parquet")
    return edit_id, second


def layer(spec: dict, name: str) -> dict | None:
    """The layer of a Vega-Lite figure (``contract.figures``) named ``name`` ("cells", "marks", "boxes", "grey",
    "blocks", "block_names"), or None."""
    return next((part for part in spec.get("layer", []) if part.get("name") == name), None)


def rows_of(spec: dict, name: str = "cells") -> list[dict]:
    """The data rows of a figure's layer named ``name`` (empty when it has none)."""
    found = layer(spec, name)
    return found["data"]["values"] if found else []


def cell_grid(spec: dict, field: str = "value") -> dict[tuple[int, int], object]:
    """A heat map's cells: (row, column) -> ``field`` ("value", "mark", or a tooltip field such as "verdict")."""
    return {(cell["row"], cell["column"]): cell.get(field) for cell in rows_of(spec)}


def boxes(spec: dict) -> list[tuple[float, float, str]]:
    """A heat map's boxes: (left, right, row label) in the x scale's units (a window start ± 0.5)."""
    return [(box["x0"], box["x1"], box["label"]) for box in rows_of(spec, "boxes")]


def row_labels(spec: dict) -> list[str]:
    """A heat map's row labels, top to bottom."""
    return layer(spec, "cells")["encoding"]["y"]["sort"]


def heat_grid(spec: dict, field: str = "value") -> list[list]:
    """A heat map as rows × columns of ``field`` (None where it has no cell), as Plotly's ``z`` was."""
    columns = layer(spec, "cells")["encoding"]["x"]["axis"]["values"]
    cells = cell_grid(spec, field)
    return [[cells.get((i, j)) for j in columns] for i in range(len(row_labels(spec)))]


def tooltips(spec: dict) -> list[str]:
    """Each cell's tooltip as one text ("name: value" lines), in the cells' order."""
    fields = [item["field"] for item in layer(spec, "cells")["encoding"]["tooltip"]]
    return ["\n".join(f"{name}: {cell[name]}" for name in fields) for cell in rows_of(spec)]
