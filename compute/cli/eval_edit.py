"""``locolab eval-edit EDIT_ID``: generate before/after images of a stored edit with the same seeds, score them with
CLIP and store the scores and a summary (efficacy, generalization, specificity)."""

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

    def number(key: str, digits: int = 2) -> str:
        value = summary.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    print(f"evaluated {edit.edit_id} with {scorer.scorer_id}: efficacy {number('efficacy')} "
          f"(before {number('efficacy_before')}, drop {number('efficacy_drop')}), "
          f"generalization {number('generalization')} (before {number('generalization_before')}, "
          f"drop {number('generalization_drop')}), specificity {number('specificity', 3)}")
    if "new_fact_gain" in summary:
        print(f"fact update, mean CLIP score of the edit's and held-out prompts before -> after: old fact "
              f"{summary['old_fact_text']!r} {number('old_fact_score_before', 3)} -> "
              f"{number('old_fact_score_after', 3)}, new fact {summary['new_fact_text']!r} "
              f"{number('new_fact_score_before', 3)} -> "
              f"{number('new_fact_score_after', 3)} (target prompt {number('new_fact_reference', 3)}; gain "
              f"{number('new_fact_gain')} of the way to it)")
    return summary


def run(args) -> None:
    edit = load_edit(args.artifacts, args.edit_id)
    run_eval(load_model(edit.meta["model"], device=args.device, dtype=args.dtype, offload=args.offload), edit, args)
