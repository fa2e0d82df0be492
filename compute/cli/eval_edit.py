"""``locolab eval-edit EDIT_ID``: generate before/after images of a stored edit with the same seeds, score them with
CLIP and store the scores and a summary: per group the normalized score drop and the rates of prompts and images
pushed below the target reference, with intervals (efficacy, generalization), and specificity."""

from compute.cli import status
from compute.cli.options import add_eval_options, add_offload_option, parse_ints
from compute.edit_eval import evaluate
from compute.edit_store import load_edit
from compute.models.loading import load_model
from compute.scoring import default_scorer, load_scorer
from compute.settings import Settings
from contract.store import resolve_root


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval-edit", help="evaluate a stored edit (before/after CLIP scores)")
    parser.add_argument("edit_id", metavar="EDIT_ID", help="an edit under <artifacts>/edits/")
    parser.add_argument("--artifacts", help="artifact root (default $LOCOLAB_ARTIFACTS or artifacts/)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    add_offload_option(parser)
    add_eval_options(parser)
    parser.set_defaults(func=run)


def run_eval(model, edit, args) -> dict:
    """Evaluate ``edit`` on ``model`` with the parsed evaluation options; prints and returns the summary."""
    seeds = parse_ints(args.seeds, "seeds")
    settings = Settings.defaults(model.spec, args.steps, args.guidance, args.size)
    scorer = load_scorer(args.scorer or default_scorer(model.spec))
    root = resolve_root(args.artifacts)
    status.report(stage="evaluating", edit_id=edit.edit_id)
    summary = evaluate(model, edit, scorer, settings, seeds, root, args.batch_size, args.unrelated,
                       args.other_concepts, progress=lambda done, total: status.report(done=done, total=total))
    status.report(stage="finished", evaluated=True)

    print(f"evaluated {edit.edit_id} with {scorer.scorer_id}, seeds {seeds} ({summary['level']:.0%} intervals):")
    for line in summary_lines(summary):
        print(f"  {line}")
    return summary


def summary_lines(summary: dict) -> list[str]:
    """The summary in words, one line per prompt group: the score drop and the two rates, each named."""
    def number(key: str, digits: int = 2) -> str:
        value = summary.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    lines = []
    for group in ("efficacy", "generalization"):
        if f"{group}_score_drop" not in summary and f"{group}_prompt_rate" not in summary:
            continue
        rates = [f"{summary[f'{group}_{unit}s_below']} of "
                 f"{summary[f'{group}_{unit}s']} {unit}s = {number(f'{group}_{unit}_rate')} "
                 f"[{number(f'{group}_{unit}_rate_low')}, {number(f'{group}_{unit}_rate_high')}] "
                 f"(before {number(f'{group}_{unit}_rate_before')})" for unit in ("prompt", "image")]
        lines.append(f"{group}: score drop {number(f'{group}_score_drop')} [{number(f'{group}_score_drop_low')}, "
                     f"{number(f'{group}_score_drop_high')}] (mean score {number(f'{group}_score_before', 3)} -> "
                     f"{number(f'{group}_score_after', 3)}, target reference {number('target_reference', 3)}); "
                     f"below the target reference: {', '.join(rates)}")
    if "specificity" in summary:
        lines.append(f"specificity: unrelated prompts keep {number('specificity', 3)} of their mean score"
                     + (f", the family's other concepts {number('other_concepts_retained', 3)}"
                        if "other_concepts_retained" in summary else ""))
    if "new_fact_gain" in summary:
        lines.append(f"fact update, mean CLIP score of the edit's and held-out prompts before -> after: old fact "
                     f"{summary['old_fact_text']!r} {number('old_fact_score_before', 3)} -> "
                     f"{number('old_fact_score_after', 3)}, new fact {summary['new_fact_text']!r} "
                     f"{number('new_fact_score_before', 3)} -> {number('new_fact_score_after', 3)} (target prompt "
                     f"{number('new_fact_reference', 3)}; gain {number('new_fact_gain')} of the way to it)")
    return lines


def run(args) -> None:
    edit = load_edit(args.artifacts, args.edit_id)
    run_eval(load_model(edit.meta["model"], device=args.device, dtype=args.dtype, offload=args.offload), edit, args)
