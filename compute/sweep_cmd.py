"""``python -m compute sweep CONFIG``: run (or plan) a LocoGen sweep into the artifact store."""

import os
import time
from datetime import datetime, timezone

from . import store
from .errors import UserError
from .loading import layer_count, resolve
from .plan import build_plan, shard_units
from .settings import Settings
from .sweep_config import check_window_sizes, load_config


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="run a LocoGen sweep from a YAML config (resumable, shardable)")
    parser.add_argument("config", help="YAML sweep config, e.g. compute/configs/tiny-sd1.yaml")
    add_run_options(parser, "windows", "print the plan and exit")
    parser.set_defaults(func=run)


def add_run_options(parser, unit_cases: str, dry_run: str) -> None:
    """The options every store-writing run shares (sweep, trace): root, sharding, limits, batch, device."""
    parser.add_argument("--artifacts", help=f"artifact root (default ${store.ROOT_ENV} or {store.DEFAULT_ROOT}/)")
    parser.add_argument("--shard", default="0/1", help="I/N: run the I-th of N shards (0-based), e.g. for array jobs")
    parser.add_argument("--limit", type=int, help=f"run at most K work units (one prompt with all its {unit_cases})")
    parser.add_argument("--dry-run", action="store_true", help=dry_run)
    parser.add_argument("--batch-size", type=int, help="images per pipeline call (default: config, else auto)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"bad --shard {text!r}: write I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise UserError(f"bad --shard {text!r}: need 0 <= I < N")
    return index, count


def launcher_shard(index: int, count: int, device: str) -> tuple[int, int, str]:
    """Under ``accelerate launch`` or ``torchrun`` (which set RANK / WORLD_SIZE / LOCAL_RANK), split this shard
    further across the launched processes, one GPU each. Shards are independent: no process group is needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return index, count, device
    rank = int(os.environ["RANK"])
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    return index * world + rank, count * world, device


def run_options(args) -> tuple[int, int, str]:
    """Check the shared options (``add_run_options``); returns this process's (shard, num_shards, device)."""
    shard, num_shards = parse_shard(args.shard)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    return launcher_shard(shard, num_shards, args.device)


def run(args) -> None:
    config = load_config(args.config)
    shard, num_shards, device = run_options(args)
    num_layers = layer_count(config.model)
    check_window_sizes(config, num_layers, args.config)
    settings = Settings.defaults(resolve(config.model), config.steps, config.guidance, config.resolution)
    units = build_plan(config, settings, num_layers)
    mine = shard_units(units, shard, num_shards)[:args.limit]
    root = store.resolve_root(args.artifacts)
    batch_size = args.batch_size or config.batch_size
    if args.dry_run:
        print_plan(config, units, mine, settings, num_layers, batch_size, shard, num_shards)
        return
    run_sweep(config, mine, settings, root, batch_size, device, args.dtype, shard, num_shards, not args.no_progress)


def print_plan(config, units, mine, settings, num_layers, batch_size, shard, num_shards) -> None:
    cases = sum(len(u.cases) for u in mine)
    images = len({c.image_key for u in mine for c in u.cases})
    per_unit = [len({c.image_key for c in u.cases}) for u in mine]
    batch = batch_size or 8
    calls = sum(-(-n // batch) for n in per_unit) * settings.steps
    rows = 2 if settings.guidance > 1 else 1
    print(f"run {config.run_id}: {config.model} ({num_layers} cross-attention layers), scorer {config.scorer}")
    print(f"  {settings.steps} steps, guidance {settings.guidance}, {settings.width}x{settings.height}, "
          f"window sizes {list(config.window_sizes)}, seeds {list(config.seeds)}")
    print(f"  shard {shard}/{num_shards}: {len(mine)} of {len(units)} work units, {cases} cases, {images} images")
    print(f"  UNet calls: {calls} at batch size {batch}{'' if batch_size else ' (auto on GPU)'} "
          f"({images * settings.steps * rows} sample evaluations)")


def run_sweep(config, units, settings, root, batch_size, device, dtype, shard, num_shards, progress) -> None:
    from .loading import load_model

    began = time.perf_counter()
    model = load_model(config.model, device=device, dtype=dtype)
    execute(config, model, began, units, settings, root, batch_size, shard, num_shards, progress)
    print_minimal_windows(root, config.run_id)


def execute(config, model, began, units, settings, root, batch_size, shard, num_shards, progress, render=None,
            layer_rows=None, details=None):
    """Run ``units`` on a loaded model as run ``config.run_id``: the run row (running, then finished / failed /
    interrupted, with timings), the layers rows (``sweep.write_layers``), the units (``sweep.run_units`` with
    ``render``), and a one-line summary. ``began`` is when loading started; ``details`` go into ``config_json``."""
    from .batching import auto_batch_size
    from .provenance import versions
    from .scoring import load_scorer
    from .sweep import run_units, write_layers, write_run_row

    created = datetime.now(timezone.utc)
    scorer = load_scorer(config.scorer, device=model.device)
    batch_size = batch_size or auto_batch_size(model, settings)
    load_s = time.perf_counter() - began
    write_run_row(config, root, shard, num_shards, "running", created, versions(), {"load_s": load_s}, details)
    write_layers(config, model, root, layer_rows)
    status, stats = "failed", None
    try:
        stats = run_units(config, model, scorer, units, settings, root, batch_size, progress, render)
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
        write_run_row(config, root, shard, num_shards, status, created, versions(), timings, details)
    print(f"{config.run_id}: {stats.units_total - stats.units_skipped} units run, {stats.units_skipped} already "
          f"done; {stats.images_generated} images generated in {stats.generate_s:.1f} s; results in {root}")
    return stats


def print_minimal_windows(root: str, run_id: str, threshold: float = 0.5) -> None:
    table = store.minimal_windows(store.Store(root).connect(), threshold, run_ids=[run_id]).to_pylist()
    if not table:
        print(f"no window removes >= {threshold:.0%} of the original-to-target score gap")
        return
    print(f"minimal localizing windows (normalized drop >= {threshold}):")
    for row in table:
        end = row["window_start"] + row["window_size"]
        print(f"  {row['family']:>8} / {row['concept']:<24} layers {row['window_start']}-{end - 1} "
              f"(m={row['window_size']}, drop {row['normalized_drop']:.2f})")
