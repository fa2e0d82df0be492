"""``locolab sweep CONFIG``: run (or plan) a LocoGen sweep into the artifact store."""

import time

from compute.cli.options import add_run_options, check_image_count, run_options
from compute.models.architectures import ARCHITECTURES
from compute.models.loading import layer_count, resolve
from compute.plan import build_plan, shard_units
from compute.settings import Settings
from compute.sweep_config import check_window_sizes, load_config
from contract import bounds, store, summaries


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="run a LocoGen sweep from a YAML config (resumable, shardable)")
    parser.add_argument("config", help="YAML sweep config: a path, or the name of a shipped one (e.g. tiny-sd1)")
    add_run_options(parser, "windows", "print the plan and exit")
    parser.set_defaults(func=run)


def run(args) -> None:
    from compute.cli import status

    config = load_config(args.config)
    shard, num_shards, device = run_options(args)
    num_layers = layer_count(config.model)
    check_window_sizes(config, num_layers, args.config)
    settings = Settings.defaults(resolve(config.model), config.steps, config.guidance, config.resolution)
    units = build_plan(config, settings, num_layers)
    mine = shard_units(units, shard, num_shards)[:args.limit]
    root = store.resolve_root(args.artifacts)
    batch_size = args.batch_size or config.batch_size
    images = len({c.image_key for u in mine for c in u.cases})
    if args.dry_run:
        print_plan(config, units, mine, settings, num_layers, batch_size, shard, num_shards)
        if images > bounds.MAX_SWEEP_IMAGES:
            print(f"  more than {bounds.MAX_SWEEP_IMAGES:,} images in one shard: running it needs "
                  f"{bounds.ALLOW_MANY} (or more shards, or --limit)")
        return
    check_image_count(images, args.allow_many_images, bounds.MAX_SWEEP_IMAGES)
    store.Store(root).check_writable()
    from compute.models.loading import load_model
    from compute.sweep import run_study

    began = time.perf_counter()
    status.report(stage="loading", run_id=config.run_id)
    model = load_model(config.model, device=device, dtype=args.dtype, offload=args.offload)
    status.report(stage="sweeping")
    stats = run_study(config, model, mine, settings, root, batch_size, shard, num_shards, not args.no_progress,
                      began=began)
    print_stats(config.run_id, stats, root)
    print_minimal_windows(root, config.run_id)


def print_plan(config, units, mine, settings, num_layers, batch_size, shard, num_shards) -> None:
    cases = sum(len(u.cases) for u in mine)
    images = len({c.image_key for u in mine for c in u.cases})
    per_unit = [len({c.image_key for c in u.cases}) for u in mine]
    batch = batch_size or 8
    calls = sum(-(-n // batch) for n in per_unit) * settings.steps
    arch = ARCHITECTURES[resolve(config.model).arch]
    rows = 2 if arch.cfg and settings.guidance > 1 else 1  # FLUX.1: guidance distilled, one row per image
    print(f"run {config.run_id}: {config.model} ({num_layers} text-reading layers), "
          f"scorer {', '.join(config.scorers)}")
    print(f"  {settings.steps} steps, guidance {settings.guidance}, {settings.width}x{settings.height}, "
          f"window sizes {list(config.window_sizes)}, seeds {list(config.seeds)}")
    print(f"  shard {shard}/{num_shards}: {len(mine)} of {len(units)} work units, {cases} cases, {images} images")
    denoiser = "UNet" if arch.denoiser == "unet" else "transformer"
    print(f"  {denoiser} calls: {calls} at batch size {batch}{'' if batch_size else ' (auto on GPU)'} "
          f"({images * settings.steps * rows} sample evaluations"
          f"{', plus the companion rows of swapped images' if arch.stream else ''})")


def print_stats(run_id: str, stats, root: str) -> None:
    """One line on what a run did (``sweep.SweepStats``)."""
    print(f"{run_id}: {stats.units_total - stats.units_skipped} units run, {stats.units_skipped} already "
          f"done; {stats.images_generated} images generated in {stats.generate_s:.1f} s; results in {root}")


def print_minimal_windows(root: str, run_id: str, threshold: float = 0.5) -> None:
    table = summaries.minimal_windows(store.Store(root).connect(), threshold, run_ids=[run_id]).to_pylist()
    if not table:
        print(f"no window removes >= {threshold:.0%} of the original-to-target score gap")
        return
    print(f"minimal localizing windows (normalized drop >= {threshold}):")
    several = len({row["scorer_id"] for row in table}) > 1
    for row in table:
        end = row["window_start"] + row["window_size"]
        scorer = f", {row['scorer_id']}" if several else ""
        print(f"  {row['family']:>8} / {row['concept']:<24} layers {row['window_start']}-{end - 1} "
              f"(m={row['window_size']}, drop {row['normalized_drop']:.2f}{scorer})")
