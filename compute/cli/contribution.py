"""``locolab contribution CONFIG``: attention-contribution localization (the DiT paper's) of a sweep config's
prompts, then the top-k interventions, into the artifact store as its own run (method ``attention-contribution``),
resumable and shardable like a sweep."""

import argparse
import time

from compute.cli import status
from compute.cli.options import add_run_options, parse_ints, run_options
from compute.cli.sweep import print_stats
from compute.models.loading import layer_count, resolve
from compute.settings import Settings
from compute.sweep_config import ConfigError, load_config, with_contribution
from contract import bounds, store, summaries
from contract.errors import UserError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("contribution", help="attention-contribution localization and top-k interventions "
                                   "of a config's prompts (resumable, shardable)")
    parser.add_argument("config", help="YAML sweep config (its optional contribution: section sets the defaults)")
    parser.add_argument("--top-k", help="comma-separated k: how many dominant sites each intervention feeds the "
                        "target (default: config, else 6 as in the paper)")
    parser.add_argument("--swap-pooled", action=argparse.BooleanOptionalAction,
                        help="the interventions also take the target's pooled text embedding (default: config, else "
                        "as the paper's code on the model: yes for FLUX.1)")
    add_run_options(parser, "seeds", "print the plan and exit")
    parser.set_defaults(func=run)


def contribution_config(args):
    """The config with method ``attention-contribution`` and its settings overridden by the command line."""
    top_k = None if args.top_k is None else tuple(parse_ints(args.top_k, "--top-k", bounds.POSITIVE_COUNT))
    try:
        return with_contribution(load_config(args.config), top_k, args.swap_pooled)
    except ConfigError as error:
        raise UserError(f"{args.config}: {error}") from None


def run(args) -> None:
    from compute.contribution_study import check_top_k, localization_cases, plan_localization

    config = contribution_config(args)
    check_top_k(config, layer_count(config.model))
    shard, num_shards, device = run_options(args)
    settings = Settings.defaults(resolve(config.model), config.steps, config.guidance, config.resolution)
    units = plan_localization(config, settings)
    root = store.resolve_root(args.artifacts)
    print(f"run {config.run_id}: attention contribution of {config.model}, top-k {list(config.contribution.top_k)}, "
          f"scorer {config.scorer}")
    print(f"  {settings.steps} steps, guidance {settings.guidance}, {settings.width}x{settings.height}, "
          f"seeds {list(config.seeds)}; {len(units)} prompts to localize, then their interventions")
    if args.dry_run:
        return
    store.Store(root).check_writable()
    from compute.contribution_study import run_study
    from compute.models.loading import load_model

    began = time.perf_counter()
    status.report(stage="loading", run_id=config.run_id)
    model = load_model(config.model, device=device, dtype=args.dtype, offload=args.offload, fp8=args.fp8)
    status.report(stage="localizing")
    result = run_study(config, model, settings, root, args.batch_size or config.batch_size, shard, num_shards,
                       args.limit, not args.no_progress, began)
    print_stats(config.run_id, result.localized, root)
    if result.intervened:
        print_stats(config.run_id, result.intervened, root)
    for (family, concept), (done, total) in result.dominance.pending.items():
        print(f"  {family} / {concept}: {done} of {total} localization images done (other shards?): rerun to "
              "intervene")
    print_dominant(root, config.run_id, localization_cases(units), model.layers, result.swap_pooled)


def print_dominant(root: str, run_id: str, case_ids: list[str], layers, swap_pooled: bool,
                   threshold: float = 0.5) -> None:
    """Per concept: its most contributing sites, and each top-k intervention's normalized drop (``case_ids``: the
    run's localization cases, which an earlier run of the same settings may have stored)."""
    con = store.Store(root).connect()
    sites = summaries.contribution_map(con, run_ids=[run_id], case_ids=case_ids).to_pylist()
    interventions = summaries.top_k_interventions(con, threshold, run_ids=[run_id], case_ids=case_ids).to_pylist()
    print(f"dominant sites (share of the concept's attention contribution over {len(layers)} sites), and the top-k "
          f"interventions (normalized drop (original - top-k) / (original - target); pooled embedding "
          f"{'swapped' if swap_pooled else 'kept'}):")
    for family, concept in dict.fromkeys((r["family"], r["concept"]) for r in sites):
        mine = sorted((r for r in sites if (r["family"], r["concept"]) == (family, concept)),
                      key=lambda r: r["site_rank"])
        top = ", ".join(f"{r['site']} {layers[r['site']].block} ({r['share']:.1%})" for r in mine[:6])
        print(f"  {family:>8} / {concept:<20} {top}")
        for row in interventions:
            if (row["family"], row["concept"]) == (family, concept):
                drop = "n/a (references tie)" if row["normalized_drop"] is None else f"{row['normalized_drop']:.2f}"
                print(f"  {'':>8}   k={row['k']:<2} sites {row['blocks']}: drop {drop} over {row['n_images']} images")
