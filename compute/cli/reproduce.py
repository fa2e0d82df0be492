"""``locolab reproduce --model MODEL``: run the paper's LocoGen studies on one model with the paper's settings into one
root (``compute.reproduce``) and print the table a reader compares with the paper."""

import time
from dataclasses import replace

from locolab.compute.cli.options import add_run_options, check_image_count, run_options
from locolab.compute.cli.sweep import print_plan, print_stats, run_context
from locolab.compute.models.loading import layer_count
from locolab.compute.reproduce import PAPER_FAMILIES, comparison, family_summary, paper_studies
from locolab.compute.runner import plan
from locolab.contract import bounds, store
from locolab.contract.errors import UserError
from locolab.contract.names import FAMILIES
from locolab.contract.notation import window_span


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("reproduce", help="run the paper's LocoGen studies on a model with the paper's "
                                                     "settings and compare the windows found with the paper's")
    parser.add_argument("--model", required=True,
                        help="a registered model (sd-1.4, sd-2.1, ...; a built-in tiny model stands in for the real "
                             "one of its architecture at CPU cost)")
    parser.add_argument("--families", default=",".join(PAPER_FAMILIES),
                        help=f"comma-separated families (default: the paper's {', '.join(PAPER_FAMILIES)})")
    parser.add_argument("--threshold", type=bounds.THRESHOLD.parse, default=0.5,
                        help="fraction of the original-to-target gap a window must remove to localize")
    add_run_options(parser, "windows", "print the plan of every study and exit (no model is loaded)")
    parser.set_defaults(func=run)


def _families(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in FAMILIES]
    if unknown or not names:
        raise UserError(f"bad --families {text!r}: use some of {', '.join(FAMILIES)}")
    return names


def run(args) -> None:
    from locolab.compute.cli import status

    studies = paper_studies(args.model, _families(args.families))
    shard, num_shards, device = run_options(args)
    root = store.resolve_root(args.artifacts)
    print(f"reproducing the paper's LocoGen studies on {args.model}"
          + (f" (standing in for {studies[0].paper_model})" if studies[0].paper_model != args.model else "")
          + f": {', '.join(s.config.name for s in studies)}, into {root}")
    try:
        num_layers = layer_count(args.model)
    except UserError as error:
        if not args.dry_run:
            raise
        print(f"  the layer count of {args.model} is unknown here ({error}); the plans need it")
        return
    planned = []
    for study in studies:
        config = study.config
        limit = min(x for x in (study.limit, args.limit) if x is not None) if (study.limit or args.limit) else None
        context = replace(run_context(args, root, shard, num_shards, study.details), limit=limit)
        first = plan(config, num_layers, context)
        planned.append((study, context, first))
        if args.dry_run:
            print(f"{config.name}: from {study.source}" + (f", first {limit} work unit(s)" if limit else ""))
            print_plan(config, first.units, first.mine, first.settings, num_layers,
                       args.batch_size or config.batch_size, shard, num_shards)
    images = sum(first.images for _, _, first in planned)
    if args.dry_run:
        print(f"in all: {images} images, each scored by {len(studies[0].config.scorers)} scorers")
        return
    check_image_count(images, args.allow_many_images, bounds.MAX_SWEEP_IMAGES)
    store.Store(root).check_writable()
    from locolab.compute.models.loading import load_model
    from locolab.compute.runner import run as run_study

    status.report(stage="loading")
    model = load_model(args.model, device=device, dtype=args.dtype)
    for study, context, _ in planned:
        status.report(stage=f"sweeping {study.family}", run_id=study.config.run_id)
        outcome = run_study(study.config, model, replace(context, began=time.perf_counter()))
        print_stats(study.config.run_id, outcome.stats, root)
    print_comparison(comparison(store.Store(root).connect(), [s for s, _, _ in planned], args.threshold),
                     args.threshold, args.model)


def _layers(window: tuple[int, int] | None) -> str:
    return "none" if window is None else window_span(*window)


def print_comparison(rows: list[dict], threshold: float, model: str) -> None:
    """The table a reader compares with the paper (``compute.reproduce.comparison``)."""
    if not rows:
        print("no scores in these runs")
        return
    stand_in = rows[0]["paper_model"] != model
    print(f"\nminimal localizing windows on {model} (LocoGen; a window localizes when a paired test shows its "
          f"normalized drop (original - window) / (original - reference) is above {threshold}, Holm-adjusted over the "
          "concept's windows, and the concept is measurable, docs/statistics.md; layers in forward order, both ends "
          "included)")
    header = f"  {'family':<8} {'concept':<40} {'scorer':<30} {'window':<11} {'drop':>6}  {'interval':<18} paper"
    print(header)
    for row in rows:
        drop = "-" if row["drop"] is None else f"{row['drop']:.2f}"
        interval = "n/a" if row["interval"] is None else f"[{row['interval'][0]:.2f}, {row['interval'][1]:.2f}]"
        paper = ("not reported" if row["paper_window"] is None
                 else f"{_layers(row['paper_window'])} ({row['paper_model']})")
        why = "" if row["window"] else f"  ({row['verdict']})"
        print(f"  {row['family']:<8} {row['concept'][:40]:<40} {row['scorer_id'][-30:]:<30} "
              f"{_layers(row['window']):<11} {drop:>6}  {interval:<18} {paper}{why}")
    print("per family and scorer:")
    for summary in family_summary(rows):
        sharing = f"{summary['sharing']} concept{'s' if summary['sharing'] != 1 else ''}"
        common = (f"most common window {_layers(summary['common_window'])} ({sharing}, mean drop "
                  f"{summary['common_drop']:.2f})" if summary["common_window"] else "no localizing window")
        paper = ("the paper reports none for this model" if summary["paper_window"] is None else
                 f"paper ({summary['paper_model']}): {_layers(summary['paper_window'])}")
        print(f"  {summary['family']} / {summary['scorer_id']}: {summary['localized']} of {summary['concepts']} "
              f"concepts localized; {common}; {paper}")
    if stand_in:
        print(f"{model} has random weights: its windows test the machinery and are not expected to match the paper")
