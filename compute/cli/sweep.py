"""``locolab sweep CONFIG``: run (or plan) a LocoGen sweep into the artifact store."""

import time
from dataclasses import replace
from pathlib import Path

from locolab.compute.cli.options import add_run_options, check_image_count, run_options
from locolab.compute.cli.summary import add_rule_options, print_summaries, rule_of
from locolab.compute.models.architectures import ARCHITECTURES
from locolab.compute.models.loading import layer_count, resolve
from locolab.compute.plan import shard_units
from locolab.compute.runner import Context, plan
from locolab.compute.sweep.config import check_scorer, load_config
from locolab.compute.sweep.window_search import search_cost
from locolab.contract import bounds, store
from locolab.contract.errors import UserError
from locolab.contract.specs import StudySpec


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="run a LocoGen sweep from a YAML config (resumable, shardable)")
    parser.add_argument("config", nargs="?",
                        help="YAML sweep config: a path, or the name of a shipped one (e.g. tiny-sd1)")
    parser.add_argument("--spec", metavar="FILE", help="the study as one JSON file (contract.specs.StudySpec.to_json, "
                                                       "as the dashboard's Localize page writes it), instead of CONFIG")
    add_run_options(parser, "windows", "print the plan and its image cost, and exit")
    add_rule_options(parser)
    parser.set_defaults(func=run)


def run_context(args, root: str, shard: int, num_shards: int, details: dict | None = None) -> Context:
    """The runner's context from the shared run options (``add_run_options``)."""
    return Context(root, shard, num_shards, args.limit, args.batch_size, not args.no_progress, details=details or {})


def study_of(args) -> StudySpec:
    """The study: a YAML config, or a ``--spec`` JSON file (checked as a config is, scorer included).

    Raises:
        UserError: both or neither given, or the file does not read back as a study.
    """
    if (args.config is None) == (args.spec is None):
        raise UserError("give a sweep config or --spec FILE, not both or neither (see sweep --help)")
    if args.config is not None:
        return load_config(args.config)
    try:
        study = StudySpec.from_json(Path(args.spec).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--spec {args.spec}: cannot read it ({error}); give the spec file's path") from None
    for scorer in study.scorers:
        check_scorer(scorer, f"--spec {args.spec}: scorer")
    return study


def run(args) -> None:
    from locolab.compute.cli import status

    config = study_of(args)
    shard, num_shards, device = run_options(args)
    root = store.resolve_root(args.artifacts)
    context = run_context(args, root, shard, num_shards)
    first = plan(config, layer_count(config.model), context)
    if args.dry_run:
        print_plan(config, first.units, first.mine, first.settings, first.num_layers,
                   args.batch_size or config.batch_size, shard, num_shards)
        if first.images > bounds.MAX_SWEEP_IMAGES:
            print(f"  more than {bounds.MAX_SWEEP_IMAGES:,} images in one shard: running it needs "
                  f"{bounds.ALLOW_MANY} (or more shards, or --limit)")
        return
    check_image_count(first.images, args.allow_many_images, bounds.MAX_SWEEP_IMAGES)
    store.Store(root).check_writable()
    from locolab.compute.models.loading import load_model
    from locolab.compute.runner import run as run_study

    began = time.perf_counter()
    status.report(stage="loading", run_id=config.run_id)
    model = load_model(config.model, device=device, dtype=args.dtype, offload=args.offload, fp8=args.fp8)
    status.report(stage="sweeping")
    outcome = run_study(config, model, replace(context, began=began))
    print_stats(config.run_id, outcome.stats, root)
    if outcome.refinement:
        print_refinement(outcome.refinement, shard, num_shards)
    rule = rule_of(args)
    if config.window_search and (args.threshold, args.level) != (config.window_search.threshold,
                                                                 config.window_search.level):
        print(f"note: the search refined at threshold {config.window_search.threshold:g}, level "
              f"{config.window_search.level:g}; sizes it skipped may localize at the summary's rule")
    print_summaries(store.Store(root).connect(), [config.run_id], rule)


def print_plan(config, units, mine, settings, num_layers, batch_size, shard, num_shards) -> None:
    cases = sum(len(u.cases) for u in mine)
    count = len({c.image_key for u in mine for c in u.cases})
    per_unit = [len({c.image_key for c in u.cases}) for u in mine]
    batch = batch_size or 8
    calls = sum(-(-n // batch) for n in per_unit) * settings.steps
    arch = ARCHITECTURES[resolve(config.model).arch]
    rows = 2 if arch.cfg and settings.guidance > 1 else 1  # FLUX.1: guidance distilled, one row per image
    print(f"run {config.run_id}: {config.model} ({num_layers} text-reading layers), "
          f"scorer {', '.join(config.scorers)}")
    search = config.window_search
    sizes = (f"window search up to m={search.max_size}, coarse sizes {list(search.coarse)}" if search
             else f"window sizes {list(config.window_sizes)}")
    print(f"  {settings.steps} steps, guidance {settings.guidance}, {settings.width}x{settings.height}, "
          f"{sizes}, seeds {list(config.seeds)}")
    print(f"  shard {shard}/{num_shards}: {len(mine)} of {len(units)} work units, {cases} cases, {count} images")
    denoiser = "UNet" if arch.denoiser == "unet" else "transformer"
    print(f"  {denoiser} calls: {calls} at batch size {batch}{'' if batch_size else ' (auto on GPU)'} "
          f"({count * settings.steps * rows} sample evaluations"
          f"{', plus the companion rows of swapped images' if arch.stream else ''})")
    if search:
        cost = search_cost(config, settings, num_layers, units)
        print(f"  search cost, all shards: first pass {cost['first_pass']} images; the refinement adds at most "
              f"{cost['refinement_max']} (every concept refined over sizes {cost['worst_sizes']}); every size "
              f"1-{search.max_size} would cost {cost['every_size']}")


def print_refinement(refinement, shard: int, num_shards: int) -> None:
    """What the window search's second pass did, or why it has not run yet."""
    if refinement.pending:
        print(f"window search: the first pass is not finished ({refinement.pending} of {refinement.total} units "
              "missing, e.g. other shards still running); rerun this sweep when they finish to refine")
        return
    if not refinement.sizes:
        print("window search: no refinement needed (each concept localizes at size 1, at no searched size, or is "
              "not measurable)")
        return
    mine = len(shard_units(refinement.units, shard, num_shards))
    print(f"window search: refined {len(refinement.sizes)} concept(s): " + "; ".join(
        f"{family}/{concept} sizes {sizes}" for (family, concept), sizes in refinement.sizes.items())
        + (f" (this shard ran {mine} of {len(refinement.units)} units; rerun the other shards for theirs)"
           if num_shards > 1 else ""))


def print_stats(run_id: str, stats, root: str) -> None:
    """One line on what a run did (``sweep.SweepStats``)."""
    print(f"{run_id}: {stats.units_total - stats.units_skipped} units run, {stats.units_skipped} already "
          f"done; {stats.images_generated} images generated in {stats.generate_s:.1f} s; results in {root}")
