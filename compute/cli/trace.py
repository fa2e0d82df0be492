"""``locolab trace CONFIG``: causal tracing (the predecessor baseline) of a sweep config's prompts, into the artifact
store as its own run (method ``trace``), resumable and shardable like a sweep."""

import argparse
import math
import time

from compute.cli import status
from compute.cli.options import add_run_options, check_image_count, run_options
from compute.cli.sweep import print_stats
from compute.models.loading import resolve
from compute.plan import shard_units
from compute.settings import Settings
from compute.sweep_config import ConfigError, load_config, with_trace
from contract import bounds, store, summaries
from contract.errors import UserError
from contract.names import TRACE_COMPONENTS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("trace", help="causal tracing of a config's prompts (resumable, shardable)")
    parser.add_argument("config", help="YAML sweep config (its optional trace: section sets the defaults)")
    parser.add_argument("--noise", type=bounds.NOISE.parse,
                        help="noise scale, a multiple of the subject's token-embedding std (default 3)")
    parser.add_argument("--components", help=f"comma-separated UNet site kinds: {', '.join(TRACE_COMPONENTS)}, "
                        "or none (default: config, else cross-attention)")
    parser.add_argument("--text-encoder", action=argparse.BooleanOptionalAction,
                        help="also trace the text-encoder layers (default: config, else yes)")
    add_run_options(parser, "sites", "load the model, print the plan and exit")
    parser.set_defaults(func=run)


def trace_config(args):
    """The config with method ``trace`` and its trace settings overridden by the command line."""
    components = None if args.components is None else tuple(dict.fromkeys(
        c.strip() for c in args.components.split(",") if c.strip() and c.strip() != "none"))
    config = load_config(args.config)
    try:
        return with_trace(config, args.noise, components, args.text_encoder)
    except ConfigError as error:
        raise UserError(f"{args.config}: {error}") from None


def run(args) -> None:
    from compute.models.loading import load_model
    from compute.sweep import run_study
    from compute.trace import TraceRenderer, plan_trace

    config = trace_config(args)
    shard, num_shards, device = run_options(args)
    settings = Settings.defaults(resolve(config.model), config.steps, config.guidance, config.resolution)
    root = store.resolve_root(args.artifacts)
    if not args.dry_run:
        store.Store(root).check_writable()
    began = time.perf_counter()
    status.report(stage="loading", run_id=config.run_id)
    model = load_model(config.model, device=device, dtype=args.dtype, offload=args.offload, fp8=args.fp8)
    plan = plan_trace(model, config, settings)
    mine = shard_units(plan.units, shard, num_shards)[:args.limit]
    print_plan(config, plan.units, mine, settings, plan.counts, shard, num_shards)
    if args.dry_run:
        return
    check_image_count(len({c.image_key for u in mine for c in u.cases}), args.allow_many_images,
                      bounds.MAX_SWEEP_IMAGES)
    status.report(stage="tracing")
    stats = run_study(config, model, mine, settings, root, args.batch_size or config.batch_size, shard, num_shards,
                      not args.no_progress, TraceRenderer(model, settings, plan.sites, plan.text), plan.layer_rows,
                      plan.details, began)
    print_stats(config.run_id, stats, root)
    print_strongest_sites(root, config.run_id)


def print_plan(config, units, mine, settings, counts, shard, num_shards) -> None:
    images = len({c.image_key for u in mine for c in u.cases})
    groups = ", ".join(f"{method} {component} ({count} sites)" for (method, component), count in counts.items())
    print(f"run {config.run_id}: causal trace of {config.model}, noise {config.trace.noise} x subject embedding std, "
          f"scorer {', '.join(config.scorers)}")
    print(f"  {settings.steps} steps, guidance {settings.guidance}, {settings.width}x{settings.height}, "
          f"seeds {list(config.seeds)}; {groups}")
    print(f"  shard {shard}/{num_shards}: {len(mine)} of {len(units)} work units, "
          f"{sum(len(u.cases) for u in mine)} cases, {images} images")


def print_strongest_sites(root: str, run_id: str) -> None:
    """Per concept and component: the site with the largest recovery, or that the concept is untraceable (its
    corruption moved the score less than ``summaries.MIN_CORRUPTION_GAP``)."""
    table = summaries.trace_effects(store.Store(root).connect(), run_ids=[run_id]).to_pylist()
    best = {}
    for row in sorted(table, key=lambda r: -math.inf if r["recovery"] is None else r["recovery"]):
        best[row["family"], row["concept"], row["component"]] = row
    print("strongest site per concept and component (recovery = (restored - corrupted) / (original - corrupted)):")
    for (family, concept, component), row in sorted(best.items()):
        found = (f"site {row['site']:>2} recovery {row['recovery']:.2f}"
                 if row["recovery"] is not None and row["corruption_gap"] >= summaries.MIN_CORRUPTION_GAP else
                 f"untraceable: the noise moved the score by {row['corruption_gap']:+.3f} only")
        print(f"  {family:>8} / {concept:<16} {component:<16} {found}")
