"""``locolab trace CONFIG``: causal tracing (the predecessor baseline) of a sweep config's prompts, into the artifact
store as its own run (method ``trace``), resumable and shardable like a sweep."""

import math
import time
from dataclasses import replace

from locolab.compute.cli import status
from locolab.compute.cli.options import add_run_options, add_spec_options, check_image_count, run_options, spec_values
from locolab.compute.cli.sweep import print_stats, run_context
from locolab.compute.plan import shard_units
from locolab.compute.sweep.config import load_config, with_trace
from locolab.contract import bounds, store, summaries
from locolab.contract.errors import UserError
from locolab.contract.specs import TraceSpec


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("trace", help="causal tracing of a config's prompts (resumable, shardable)")
    parser.add_argument("config", help="YAML sweep config (its optional trace: section sets the defaults)")
    add_spec_options(parser, TraceSpec, overrides=True)
    add_run_options(parser, "sites", "load the model, print the plan and exit")
    parser.set_defaults(func=run)


def trace_config(args):
    """The config with method ``trace`` and its trace settings overridden by the command line."""
    config = load_config(args.config)
    try:
        return with_trace(config, **spec_values(TraceSpec, args, given=True))
    except UserError as error:
        raise UserError(f"{args.config}: {error}") from None


def run(args) -> None:
    from locolab.compute.models.loading import load_model
    from locolab.compute.runner import run as run_study
    from locolab.compute.runner import settings_of
    from locolab.compute.trace import plan_trace

    config = trace_config(args)
    shard, num_shards, device = run_options(args)
    settings = settings_of(config)
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
    outcome = run_study(config, model, replace(run_context(args, root, shard, num_shards), began=began))
    print_stats(config.run_id, outcome.stats, root)
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
