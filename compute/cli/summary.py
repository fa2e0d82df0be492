"""``locolab summary [RUN ...]``: the localization summary of stored LocoGen runs, each on its own, or pooled when their
settings match exactly; per concept the reference gap with its interval and the verdict (a minimal localizing
window, none, or not measurable and why), optionally every window as CSV."""

import io
import os

import pyarrow.csv as pcsv

from locolab.contract import bounds, store, summaries
from locolab.contract.errors import UserError
from locolab.contract.intervals import RESAMPLES, SEED
from locolab.contract.names import TARGET


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("summary", help="localization summary of stored runs (per run, or pooled)")
    parser.add_argument("runs", nargs="*", metavar="RUN",
                        help="run ids or their YAML configs; several are pooled (refused unless their settings "
                             "match); none: every LocoGen run in the root, each on its own")
    parser.add_argument("--artifacts", help="artifact root (default $LOCOLAB_ARTIFACTS or artifacts/)")
    add_rule_options(parser)
    parser.add_argument("--csv", metavar="PATH", help="also write every window's row (point, interval, verdict) as CSV")
    parser.set_defaults(func=run)


def add_rule_options(parser) -> None:
    """The statistics options (docs/statistics.md) every summary takes."""
    group = parser.add_argument_group("statistics (docs/statistics.md)")
    group.add_argument("--threshold", type=bounds.THRESHOLD.parse, default=summaries.DEFAULT_THRESHOLD,
                       help="fraction of the original-to-reference gap a window must remove (judged on its interval)")
    group.add_argument("--level", type=bounds.LEVEL.parse, default=summaries.DEFAULT_LEVEL, help="interval level")
    group.add_argument("--min-gap", type=bounds.SCORE_GAP.parse, default=summaries.MIN_REFERENCE_GAP,
                       help="smallest original-to-reference gap (CLIP-score units) a concept must clearly exceed")
    group.add_argument("--resamples", type=bounds.RESAMPLES.parse, default=RESAMPLES, help="bootstrap resamples")
    group.add_argument("--bootstrap-seed", type=bounds.SEED.parse, default=SEED,
                       help="seed of the bootstrap's resamples (not of any image)")
    group.add_argument("--min-units", type=bounds.MIN_UNITS.parse, default=summaries.MIN_UNITS,
                       help="fewest prompt x seed units a measurable concept has")
    group.add_argument("--adjust", choices=summaries.ADJUSTMENTS, default=summaries.ADJUSTMENTS[0],
                       help="adjust the p-values of a concept's windows together (holm) or judge each on its own")
    group.add_argument("--selection", choices=summaries.SELECTIONS, default=summaries.SELECTIONS[0],
                       help="confirm: choose the minimal window on half the seeds and measure it on the other half; "
                            "all: choose and measure on every unit (optimistic); auto: confirm when each half has "
                            "--min-units units")
    group.add_argument("--cluster-prompts", type=bounds.CLUSTER_PROMPTS.parse, default=summaries.CLUSTER_PROMPTS,
                       help="prompts from which a concept's prompts are resampled as a sample (fewer: fixed)")


def rule_of(args) -> summaries.Rule:
    return summaries.Rule(args.threshold, args.level, args.min_gap, args.resamples, args.bootstrap_seed,
                          args.min_units, adjust=args.adjust, selection=args.selection,
                          cluster_prompts=args.cluster_prompts)


def _run_id(name: str) -> str:
    if name.endswith((".yaml", ".yml")):
        from locolab.compute.sweep.config import load_config

        if not os.path.isfile(name):
            raise UserError(f"{name}: no such config file; give a run id or an existing YAML config")
        return load_config(name).run_id
    return name


def run(args) -> None:
    root = store.resolve_root(args.artifacts)
    con = store.Store(root).connect()
    rule = rule_of(args)
    run_ids = [_run_id(name) for name in args.runs] or None
    if run_ids is None and not con.execute(f"SELECT count(*) FROM scores WHERE {summaries.LOCOGEN_ROWS}").fetchone()[0]:
        raise UserError(f"no LocoGen scores under {root}: run `locolab sweep CONFIG` first, or pass --artifacts")
    print_summaries(con, run_ids, rule)
    if args.csv:
        windows = summaries.localization(con, run_ids=run_ids, **rule.options())
        buffer = io.BytesIO()
        pcsv.write_csv(windows, buffer)
        store.atomic_write(args.csv, lambda file: file.write(buffer.getvalue()))
        print(f"wrote {windows.num_rows} window rows to {args.csv}")


def print_summaries(con, run_ids: list[str] | None, rule: summaries.Rule) -> None:
    """Print the summary of each run (``run_ids`` None), or of ``run_ids`` pooled."""
    table = summaries.concept_summary(con, run_ids=run_ids, **rule.options()).to_pylist()
    for label in dict.fromkeys(row["run_id"] for row in table):
        print_summary(con, label, [row for row in table if row["run_id"] == label], rule)


def _one(values) -> str:
    if not values:
        return "unknown"
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def print_summary(con, label: str, rows: list[dict], rule: summaries.Rule) -> None:
    """Print one summary: which run(s) and settings, the rule, then one line per concept."""
    settings = summaries.run_settings(con, label.split("+")).to_pylist()
    first = settings[0]
    pooled = f"{len(settings)} runs pooled ({', '.join(s['run_id'] for s in settings)})" if len(settings) > 1 else \
        f"run {label}"
    reference = first["reference"][0]
    note = ("the plain target prompt; on this model it equals the all-layers swap" if reference == TARGET else
            "the all-layers swap (every layer fed the target; the target prompt also changes the text outside "
            "cross-attention)")
    seeds = sorted({seed for s in settings for seed in (s["seeds"] or [])})
    search = summaries.config_of(first).get("window_search")
    sizes = sorted({m for s in settings for m in (s["window_sizes"] or [])})
    status = ", ".join(sorted({s["status"] for s in settings}))
    print(f"summary of {pooled} ({status}): {first['model']}, scorer {_one(first['scorer_id'])}")
    print(f"  {_one(first['steps'])} steps, guidance {_one(first['guidance'])}, {_one(first['width'])}x"
          f"{_one(first['height'])}, scheduler {_one(first['scheduler'])}, seeds {seeds}, window sizes {sizes}"
          + (f" (search up to m={search['max_size']}, coarse {search['coarse']})" if search else ""))
    print(f"  reference: {note}")
    adjusted = ("Holm-adjusted over the concept's windows" if rule.adjust == "holm" else
                "each window on its own (unadjusted)")
    print(f"  rule: a window localizes when a paired one-sided test over prompt x seed units shows it removes more "
          f"than {rule.threshold:g} of the gap at error {(1 - rule.level) / 2:g}, {adjusted}; intervals: "
          f"{rule.level:.0%} bootstrap ({rule.resamples} resamples, seed {rule.seed}; prompts resampled from "
          f"{rule.cluster_prompts} prompts); a concept is measurable when it has at least {rule.min_units} units, its "
          f"original - reference gap's interval lies at or above {rule.min_gap:g} and its scorer has trained weights")
    width = max([len(f"{r['family']} / {r['concept']}") for r in rows] + [16])
    print(f"  {'family / concept':<{width}}  {'units':>5}  {'gap ± s.d. over units [interval]':<35}  verdict")
    for row in rows:
        gap = f"{_n(row['gap'])} ± {_n(row['gap_std'])} [{_n(row['gap_low'])}, {_n(row['gap_high'])}]"
        units = f"{row['n_units']}" + (f"/{row['n_prompts']}p" if row["n_prompts"] > 1 else "")
        print(f"  {row['family'] + ' / ' + row['concept']:<{width}}  {units:>5}  {gap:<35}  {row['verdict']}")
    localized = sum(r["localizes"] for r in rows)
    unmeasurable = sum(not r["measurable"] for r in rows)
    print(f"  {localized} of {len(rows)} concepts localized; {unmeasurable} not measurable")


def _n(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
