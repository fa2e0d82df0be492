"""Run a sweep (LocoGen, or any planned cases with a renderer, e.g. causal tracing): generate every planned case in
batches, score it, and write it to the store.

Per work unit: images are generated batch by batch (each batch one pipeline call per denoising step) and written as
PNGs; then every case of the unit is scored from its PNG by each of the run's scorers, one scores part per scorer, and
the unit's cases part is written last. A batch whose PNGs all read back whole is not generated again, a scorer whose
part reads back whole is not run again, and a unit whose parts read back whole with one row per case and whose images
are all present is skipped, so a run killed at any moment (or a damaged part or image) and rerun ends with the same
tables. Scores always come from the stored 8-bit images, so they reproduce when recomputed from the artifact
root.
"""

import hashlib
import io
import json
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from locolab.compute.cli import status
from locolab.compute.generation import NOISE_SOURCE, Case, generate_batch, make_encoder
from locolab.compute.grid import to_pil
from locolab.compute.models.layers import resolution_at
from locolab.compute.models.loading import Model
from locolab.compute.plan import PlannedCase, Unit
from locolab.compute.provenance import git_commit, versions, weights_fingerprint
from locolab.compute.settings import Settings
from locolab.compute.sweep.config import SweepConfig
from locolab.contract import store
from locolab.contract.errors import UserError
from locolab.contract.names import CROSS_ATTENTION, LOCOGEN

# Generates a batch of planned cases: (N, H, W, 3) float images in [0, 1], in order.
Render = Callable[[list[PlannedCase]], np.ndarray]


@dataclass
class SweepStats:
    """What a run did."""

    units_total: int = 0
    units_skipped: int = 0
    images_generated: int = 0
    images_reused: int = 0
    generate_s: float = 0.0
    score_s: float = 0.0
    timings: dict = field(default_factory=dict)

    def add(self, other: "SweepStats") -> None:
        """Count ``other``'s work (a second pass of the same run) in these totals."""
        for name in ("units_total", "units_skipped", "images_generated", "images_reused", "generate_s", "score_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def score_part(unit: Unit, scorer_id: str, scorers: tuple[str, ...]) -> str:
    """The name of a unit's scores part for one scorer: the unit id when the run has one scorer (as before runs
    could have several), else the unit id and a short digest of the scorer id."""
    if len(scorers) == 1:
        return unit.unit_id
    return f"{unit.unit_id}-{hashlib.sha256(scorer_id.encode()).hexdigest()[:8]}"


def part_problem(root: str, table: str, part: str, model: str, unit: Unit, reader: store.Store | None = None
                 ) -> str | None:
    """Why one of a unit's parts is not done, or None: it must exist, read back whole as a LocoLab ``table`` part,
    and hold exactly one row per planned case."""
    path = store.part_path(table, part, {"model": model, "family": unit.family}, root)
    if not store.exists(path):
        return f"no {table} part"
    try:
        data = (reader or store.Store(root)).read(path)
    except Exception as error:  # whatever a damaged file raises (Arrow, thrift, OS), the part is redone
        return f"{table} part unreadable ({type(error).__name__})"
    problem = store.file_problem(table, data)
    if problem:
        return f"{table} part: {problem}"
    expected = sorted(case.case_id for case in unit.cases)
    if "case_id" not in data.column_names or sorted(data["case_id"].to_pylist()) != expected:
        return f"{table} part has {data.num_rows} rows, not the unit's {len(expected)} cases"
    return None


def unit_problem(root: str, model: str, unit: Unit, scorers: tuple[str, ...], images: set[str] | None = None
                 ) -> str | None:
    """Why a unit is not done, or None: each scorer's scores part and the cases part must read back whole with one
    row per planned case (``part_problem``), and every image must be present and end as a whole PNG
    (``store.png_ends``). A killed run leaves scores parts without the cases part (cases is written last); damage
    leaves a part unreadable, short or foreign, or an image gone or cut off.

    Args:
        scorers: the run's scorer ids (one scores part each).
        images: the image file names present in the model's image folder (``image_names``); listed when None.
    """
    reader = store.Store(root)
    parts = [("scores", score_part(unit, scorer, scorers)) for scorer in scorers] + [("cases", unit.unit_id)]
    for table, part in parts:
        problem = part_problem(root, table, part, model, unit, reader)
        if problem:
            return problem
    present = image_names(root, model) if images is None else images
    keys = {case.image_key for case in unit.cases}
    missing = sorted(key for key in keys if f"{key}.png" not in present)
    if missing:
        return f"{len(missing)} image(s) missing"
    cut = [key for key in keys if not store.png_ends(store.join(root, store.image_relpath(model, key)))]
    return f"{len(cut)} image(s) cut off" if cut else None


def unit_done(root: str, model: str, unit: Unit, scorers: tuple[str, ...], images: set[str] | None = None) -> bool:
    """Whether the unit's results are complete and readable (``unit_problem``)."""
    return unit_problem(root, model, unit, scorers, images) is None


def image_names(root: str, model: str) -> set[str]:
    """The finished image files in the model's image folder (one listing, not one lookup per image)."""
    folder = store.join(root, store.image_relpath(model, "x")).rsplit("/", 1)[0]
    return {name for name in store.list_names(folder) if not name.startswith(store.TMP_PREFIX)}


def _load_png(path: str) -> np.ndarray:
    with Image.open(io.BytesIO(store.read_bytes(path))) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _png_ok(path: str) -> bool:
    """Whether a stored PNG is present and whole (its chunks' checksums hold)."""
    try:
        with Image.open(io.BytesIO(store.read_bytes(path))) as image:
            image.verify()
    except Exception:  # missing, truncated or not a PNG: PIL raises several kinds
        return False
    return True


def _generate_unit(model: Model, unit: Unit, root: str, batch_size: int, render: Render, stats: SweepStats,
                   progress: Callable[[int], None]) -> None:
    unique = list({case.image_key: case for case in unit.cases}.values())
    for start in range(0, len(unique), batch_size):
        batch = unique[start:start + batch_size]
        paths = [store.join(root, store.image_relpath(model.name, case.image_key)) for case in batch]
        # A unit is (re)done because it is incomplete or damaged: reuse only images that read back whole.
        if all(_png_ok(path) for path in paths):
            stats.images_reused += len(batch)
            progress(len(batch))
            continue
        began = time.perf_counter()
        images = render(batch)
        stats.generate_s += time.perf_counter() - began
        for path, image in zip(paths, images):
            store.write_png_atomic(path, to_pil(image))
        stats.images_generated += len(batch)
        progress(len(batch))


def locogen_renderer(model: Model, settings: Settings) -> Render:
    """Render LocoGen cases: original, target, or the original with a window fed the target."""
    encoder = make_encoder(model)
    return lambda batch: generate_batch(model, [Case(c.generation_prompt, c.seed, c.window,
                                                     c.target if c.window else None) for c in batch],
                                        settings, encoder)


def _score_unit(scorer, model_name: str, unit: Unit, root: str, stats: SweepStats) -> list[float]:
    # Each distinct (image, text) is scored once: cases that share an image (the all-layers reference and the window
    # of every layer) get the very same score, so a window equal to the reference has a drop of exactly 1.
    began = time.perf_counter()
    distinct = list(dict.fromkeys((c.image_key, c.score_text) for c in unit.cases))
    images = np.stack([_load_png(store.join(root, store.image_relpath(model_name, key))) for key, _ in distinct])
    scores = dict(zip(distinct, scorer.score(images, [text for _, text in distinct])))
    stats.score_s += time.perf_counter() - began
    return [float(scores[c.image_key, c.score_text]) for c in unit.cases]


def _common(config: SweepConfig, case: PlannedCase) -> dict:
    return {"case_id": case.case_id, "run_id": config.run_id, "model": config.model, "family": case.family,
            "concept": case.concept, "kind": case.kind, "window_start": case.window_start,
            "window_size": case.window_size, "seed": case.seed, "method": case.method,
            "component": case.component, "noise": case.noise,
            "blocks": None if case.blocks is None else list(case.blocks), "site": case.site}


def _case_rows(config: SweepConfig, settings: Settings, unit: Unit) -> list[dict]:
    return [{**_common(config, c), "prompt": c.prompt, "target": c.target,
             "image_path": store.image_relpath(config.model, c.image_key), **settings.to_dict()} for c in unit.cases]


def _score_rows(config: SweepConfig, unit: Unit, scores, scorer_id: str) -> list[dict]:
    return [{**_common(config, c), "scorer_id": scorer_id, "score_text": c.score_text, "score": s}
            for c, s in zip(unit.cases, scores)]


def write_run_row(config: SweepConfig, root: str, shard: int, num_shards: int, status: str, created: datetime,
                  versions: dict, timings: dict, details: dict | None = None, columns: dict | None = None) -> None:
    """Write (or update) the run's row for this shard; ``details`` are added to its ``config_json``, ``columns`` (e.g.
    scheduler, reference) to the row."""
    finished = datetime.now(UTC) if status != "running" else None
    store.write_table("runs", [{**(columns or {}),
        "run_id": config.run_id, "config_name": config.name, "method": config.method,
        "config_json": json.dumps({**config.to_dict(), **(details or {})}),
        "model": config.model, "created_at": created, "finished_at": finished, "status": status,
        "git_commit": git_commit(), "host": socket.gethostname(), "versions_json": json.dumps(versions),
        "timings_json": json.dumps(timings), "shard": shard, "num_shards": num_shards}],
        part=f"{config.run_id}-{shard}of{num_shards}", root=root)


def check_weights(config: SweepConfig, root: str, weights: str) -> None:
    """Refuse to resume run ``config.run_id`` in ``root`` when an earlier shard or run recorded other weights of its
    model (a retrained embedded model keeps its name, so the run id cannot tell); warn when its earlier rows predate
    the fingerprint, so nothing can be checked."""
    con = store.Store(root).connect()
    rows = [w for (w,) in con.execute("SELECT json_extract_string(config_json, '$.weights') FROM runs "
                                      "WHERE run_id = ?", [config.run_id]).fetchall()]
    recorded = {w for w in rows if w is not None}
    if recorded - {weights}:
        raise UserError(f"run {config.run_id} in {root} was made with other weights of {config.model} "
                        f"({', '.join(sorted(recorded))}, now {weights}): its finished units would be resumed as this "
                        "model's; use a fresh artifact root (--artifacts)")
    if rows and not recorded:
        warnings.warn(f"run {config.run_id} in {root} recorded no weights fingerprint (made before runs did): its "
                      f"finished units are resumed as made with these weights of {config.model} ({weights}); if "
                      "it was retrained since, use a fresh artifact root (--artifacts)", stacklevel=2)


def write_layers(config: SweepConfig, model: Model, root: str, rows: list[dict] | None = None,
                 settings: Settings | None = None) -> None:
    """Write the run's ``layers`` rows: ``rows`` (dicts with a ``component``), else the cross-attention layers. With
    ``settings``, each row's ``resolution`` is the side its input has at the run's image height, not at the model's
    default size (SD-2.1 run at 512 sees 64² at its first layers, 96² at its default 768)."""
    if rows is None:
        rows = [{**layer.to_dict(), "component": CROSS_ATTENTION} for layer in model.layers]
    if settings is not None:
        rows = [{**row, "resolution": resolution_at(row.get("resolution"), model.spec.resolution, settings.height)}
                for row in rows]
    names = store.SCHEMAS["layers"].names
    rows = [{"run_id": config.run_id, "model": config.model, **{k: v for k, v in row.items() if k in names}}
            for row in rows]
    store.write_table("layers", rows, part=config.run_id, root=root)


def _remove_debris(root: str, model: str) -> None:
    """Temporary files of this host's writers that were killed mid-write (e.g. by kill -9)."""
    image_dir = os.path.dirname(store.join(root, store.image_relpath(model, "x")))
    directories = [image_dir] + [parent for parent, _, _ in os.walk(store.join(root, "tables"))]
    for directory in directories:
        if os.path.isdir(directory):
            store.remove_stale_temps(directory)


def run_units(config: SweepConfig, model: Model, scorers: list, units: list[Unit], settings: Settings, root: str,
              batch_size: int, show_progress: bool = True, render: Render | None = None) -> SweepStats:
    """Generate, score and store ``units``, skipping finished ones.

    Args:
        config: the study (its run id tags every row).
        model: the loaded model; ``config.model`` names it in the tables.
        scorers: one ``scoring.ClipScorer`` per scorer of ``config.scorers``, in that order.
        units: this shard's units.
        settings: sampling settings (the ones the plan was built with).
        root: artifact root.
        batch_size: images per pipeline call.
        show_progress: draw a progress bar (images done / total, images/s, ETA).
        render: generates a batch of cases; LocoGen's (``locogen_renderer``) when None.
    """
    ids = tuple(scorer.scorer_id for scorer in scorers)
    if ids != config.scorers:
        raise ValueError(f"scorers {list(ids)} do not match the config's {list(config.scorers)}")
    stats = SweepStats(units_total=len(units))
    if "://" not in root:
        _remove_debris(root, config.model)
    present = image_names(root, config.model)
    todo = [u for u in units if not unit_done(root, config.model, u, ids, present)]
    stats.units_skipped = len(units) - len(todo)
    done_images = sum(len({c.image_key for c in u.cases}) for u in units if u not in todo)
    total = sum(len({c.image_key for c in u.cases}) for u in units)
    render = render or locogen_renderer(model, settings)
    with tqdm(total=total, initial=done_images, unit="img", disable=not show_progress, dynamic_ncols=True,
              desc=config.name) as bar:
        def advance(count: int) -> None:
            bar.update(count)
            status.report(done=bar.n, total=total)  # a launcher's progress (``--status-file``)

        status.baseline(done_images, total)
        for unit in todo:
            bar.set_postfix_str(f"{unit.family}/{unit.concept}")
            _generate_unit(model, unit, root, batch_size, render, stats, advance)
            for scorer in scorers:
                part = score_part(unit, scorer.scorer_id, ids)
                if part_problem(root, "scores", part, config.model, unit) is None:
                    continue
                scores = _score_unit(scorer, config.model, unit, root, stats)
                store.write_table("scores", _score_rows(config, unit, scores, scorer.scorer_id), part=part, root=root)
            store.write_table("cases", _case_rows(config, settings, unit), part=unit.unit_id, root=root)
    return stats


def run_study(config: SweepConfig, model: Model, units: list[Unit], settings: Settings, root: str,
              batch_size: int | None = None, shard: int = 0, num_shards: int = 1, show_progress: bool = True,
              render: Render | None = None, layer_rows: list[dict] | None = None, details: dict | None = None,
              began: float | None = None, follow_up: Callable[[], list[Unit]] | None = None) -> SweepStats:
    """Run ``units`` on a loaded model as run ``config.run_id``: the run row (running, then finished / failed /
    interrupted, with timings), the layers rows (``write_layers``), then the units (``run_units`` with ``render``).

    Args:
        config, model, units, settings, root, render: as ``run_units``.
        batch_size: images per pipeline call (None: ``batching.auto_batch_size``).
        shard, num_shards: which shard of the run this process is (one run row each).
        show_progress: draw a progress bar.
        layer_rows: the run's sites for the ``layers`` table (default: the model's cross-attention layers).
        details: added to the run's ``config_json`` (with ``noise``: how the images' noise was drawn).
        began: ``time.perf_counter()`` when loading started (for the recorded load time; default: now).
        follow_up: called once ``units`` are done; the units it returns (e.g. a window search's refinement) are run
            too, as part of the same run.
    """
    from locolab.compute.batching import auto_batch_size
    from locolab.compute.scoring import load_scorer

    store.Store(root).check_writable()  # before anything is written
    began = time.perf_counter() if began is None else began
    created = datetime.now(UTC)
    details = {"noise": NOISE_SOURCE, **(details or {})}
    weights = weights_fingerprint(model.spec)
    if weights:
        check_weights(config, root, weights)
        details["weights"] = weights
    scorers = [load_scorer(name, device=model.device) for name in config.scorers]
    batch_size = batch_size or auto_batch_size(model, settings)
    load_s = time.perf_counter() - began
    # What the run's summaries depend on beyond its config: the scheduler, and which reference normalizes its drops.
    columns = {"scheduler": type(model.pipe.scheduler).__name__,
               "reference": model.arch.reference if config.method == LOCOGEN else None}
    write_run_row(config, root, shard, num_shards, "running", created, versions(), {"load_s": load_s}, details,
                  columns)
    write_layers(config, model, root, layer_rows, settings)
    status, stats = "failed", None
    try:
        stats = run_units(config, model, scorers, units, settings, root, batch_size, show_progress, render)
        more = follow_up() if follow_up else []
        if more:
            stats.add(run_units(config, model, scorers, more, settings, root, batch_size, show_progress, render))
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        timings = {"load_s": round(load_s, 3), "total_s": round(time.perf_counter() - began, 3),
                   "batch_size": batch_size}
        if stats:
            timings.update(generate_s=round(stats.generate_s, 3), score_s=round(stats.score_s, 3),
                           images_generated=stats.images_generated, images_reused=stats.images_reused,
                           units=stats.units_total, units_skipped=stats.units_skipped,
                           images_per_s=round(stats.images_generated / stats.generate_s, 3)
                           if stats.generate_s else None)
        write_run_row(config, root, shard, num_shards, status, created, versions(), timings, details, columns)
    return stats
