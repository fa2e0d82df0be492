"""``locolab contribution CONFIG``: attention-contribution localization (the DiT paper's) of a sweep config's
prompts, then the top-k interventions, into the artifact store as its own run (method ``attention-contribution``),
resumable and shardable like a sweep."""

import time
from dataclasses import replace

from locolab.compute.cli import status
from locolab.compute.cli.options import add_run_options, add_spec_options, run_options, spec_values
from locolab.compute.cli.sweep import print_stats, run_context
from locolab.compute.models.loading import layer_count
from locolab.compute.sweep.config import load_config, with_contribution
from locolab.contract import store, summaries
from locolab.contract.errors import UserError
from locolab.contract.specs import ContributionSpec


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("contribution", help="attention-contribution localization and top-k interventions "
                                   "of a config's prompts (resumable, shardable)")
    parser.add_argument("config", help="YAML sweep config (its optional contribution: section sets the defaults)")
    add_spec_options(parser, ContributionSpec, overrides=True)
    add_run_options(parser, "seeds", "print the plan and exit")
    parser.set_defaults(func=run)


def contribution_config(args):
    """The config with method ``attention-contribution`` and its settings overridden by the command line."""
    config = load_config(args.config)
    try:
        return with_contribution(config, **spec_values(ContributionSpec, args, given=True))
    except UserError as error:
        raise UserError(f"{args.config}: {error}") from None


def run(args) -> None:
    from locolab.compute.contribution.study import check_top_k, localization_cases, plan_localization
    from locolab.compute.runner import settings_of

    config = contribution_config(args)
    check_top_k(config, layer_count(config.model))
    shard, num_shards, device = run_options(args)
    settings = settings_of(config)
    units = plan_localization(config, settings)
    root = store.resolve_root(args.artifacts)
    print(f"run {config.run_id}: attention contribution of {config.model}, top-k {list(config.contribution.top_k)}, "
          f"scorer {config.scorer}")
    print(f"  {settings.steps} steps, guidance {settings.guidance}, {settings.width}x{settings.height}, "
          f"seeds {list(config.seeds)}; {len(units)} prompts to localize, then their interventions")
    if args.dry_run:
        return
    store.Store(root).check_writable()
    from locolab.compute.models.loading import load_model
    from locolab.compute.runner import run as run_study

    began = time.perf_counter()
    status.report(stage="loading", run_id=config.run_id)
    model = load_model(config.model, device=device, dtype=args.dtype, offload=args.offload, fp8=args.fp8)
    status.report(stage="localizing")
    result = run_study(config, model, replace(run_context(args, root, shard, num_shards), began=began)).contribution
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
