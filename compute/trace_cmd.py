"""``python -m compute trace CONFIG``: causal tracing (the predecessor baseline) of a sweep config's prompts, into
the artifact store as its own run (method ``trace``), resumable and shardable like a sweep."""

import argparse
import math
import time
from dataclasses import replace

from . import store
from .errors import UserError
from .loading import resolve
from .plan import build_trace_plan, shard_units
from .settings import Settings
from .sweep_cmd import add_run_options, run_options
from .sweep_config import TRACE_COMPONENTS, ConfigError, TraceSpec, load_config


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("trace", help="causal tracing of a config's prompts (resumable, shardable)")
    parser.add_argument("config", help="YAML sweep config (its optional trace: section sets the defaults)")
    parser.add_argument("--noise", type=float,
                        help="noise scale, a multiple of the subject's token-embedding std (default 3)")
    parser.add_argument("--components", help=f"comma-separated UNet site kinds: {', '.join(TRACE_COMPONENTS)}, "
                        "or none (default: config, else cross-attention)")
    parser.add_argument("--text-encoder", action=argparse.BooleanOptionalAction,
                        help="also trace the text-encoder layers (default: config, else yes)")
    add_run_options(parser, "sites", "load the model, print the plan and exit")
    parser.set_defaults(func=run)


def trace_config(args):
    """The config with method ``trace`` and its trace settings overridden by the command line."""
    config = load_config(args.config)
    spec = config.trace
    components = spec.components if args.components is None else tuple(
        c.strip() for c in args.components.split(",") if c.strip() and c.strip() != "none")
    try:
        spec = TraceSpec(spec.noise if args.noise is None else args.noise, components,
                         spec.text_encoder if args.text_encoder is None else args.text_encoder)
    except ConfigError as error:
        raise UserError(f"{args.config}: {error}") from None
    return replace(config, method="trace", trace=spec)


def run(args) -> None:
    from .loading import load_model
    from .sweep_cmd import execute
    from .trace import TraceRenderer, embedding_std, text_sites, unet_sites

    config = trace_config(args)
    shard, num_shards, device = run_options(args)
    settings = Settings.defaults(resolve(config.model), config.steps, config.guidance, config.resolution)
    began = time.perf_counter()
    model = load_model(config.model, device=device, dtype=args.dtype)
    sites = {component: unet_sites(model, component) for component in config.trace.components}
    text = text_sites(model) if config.trace.text_encoder else []
    counts = {("trace-unet", component): len(found) for component, found in sites.items()}
    if text:
        counts["trace-text", "text-encoder"] = len(text)
    units = build_trace_plan(config, settings, counts)
    mine = shard_units(units, shard, num_shards)[:args.limit]
    root = store.resolve_root(args.artifacts)
    print_plan(config, units, mine, settings, counts, shard, num_shards)
    if args.dry_run:
        return
    layer_rows = [site.row() for found in [*sites.values(), text] for site in found]
    render = TraceRenderer(model, settings, sites, text)
    execute(config, model, began, mine, settings, root, args.batch_size or config.batch_size, shard, num_shards,
            not args.no_progress, render, layer_rows,
            {"embedding_std": {c.name: embedding_std(model, c.name) for f in config.families for c in f.concepts}})
    print_strongest_sites(root, config.run_id)


def print_plan(config, units, mine, settings, counts, shard, num_shards) -> None:
    images = len({c.image_key for u in mine for c in u.cases})
    groups = ", ".join(f"{method} {component} ({count} sites)" for (method, component), count in counts.items())
    print(f"run {config.run_id}: causal trace of {config.model}, noise {config.trace.noise} x subject embedding std, "
          f"scorer {config.scorer}")
    print(f"  {settings.steps} steps, guidance {settings.guidance}, {settings.width}x{settings.height}, "
          f"seeds {list(config.seeds)}; {groups}")
    print(f"  shard {shard}/{num_shards}: {len(mine)} of {len(units)} work units, "
          f"{sum(len(u.cases) for u in mine)} cases, {images} images")


def print_strongest_sites(root: str, run_id: str) -> None:
    """Per concept and component: the site with the largest recovery, or that the concept is untraceable (its
    corruption moved the score less than ``store.MIN_CORRUPTION_GAP``)."""
    table = store.trace_effects(store.Store(root).connect(), run_ids=[run_id]).to_pylist()
    best = {}
    for row in sorted(table, key=lambda r: -math.inf if r["recovery"] is None else r["recovery"]):
        best[row["family"], row["concept"], row["component"]] = row
    print("strongest site per concept and component (recovery = (restored - corrupted) / (original - corrupted)):")
    for (family, concept, component), row in sorted(best.items()):
        found = (f"site {row['site']:>2} recovery {row['recovery']:.2f}"
                 if row["recovery"] is not None and row["corruption_gap"] >= store.MIN_CORRUPTION_GAP else
                 f"untraceable: the noise moved the score by {row['corruption_gap']:+.3f} only")
        print(f"  {family:>8} / {concept:<16} {component:<16} {found}")
