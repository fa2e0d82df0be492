"""``python -m compute eval-edit EDIT_ID``: generate before/after images of a stored edit with the same seeds,
score them with CLIP and store the scores and a summary (efficacy, generalization, specificity)."""

from .edit_eval import evaluate
from .edit_store import load_edit
from .generate_cmd import parse_ints
from .loading import load_model
from .scoring import DEFAULT_SCORER, TINY_SCORER, load_scorer
from .settings import Settings
from .store import resolve_root


def add_eval_options(parser) -> None:
    """The evaluation options shared by ``edit --eval`` and ``eval-edit``."""
    group = parser.add_argument_group("evaluation")
    group.add_argument("--seeds", default="0,1", help="comma-separated seeds, the same before and after")
    group.add_argument("--steps", type=int, help="denoising steps (model default)")
    group.add_argument("--guidance", type=float, help="guidance scale (model default)")
    group.add_argument("--size", type=int, help="image side in pixels (model default)")
    group.add_argument("--scorer", help=f"CLIP scorer (default: the model's own, e.g. the toy world's mini-CLIP; "
                                        f"{TINY_SCORER} for built-in models; else {DEFAULT_SCORER})")
    group.add_argument("--unrelated", type=int, default=20, help="unrelated prompts for specificity")
    group.add_argument("--other-concepts", type=int, default=3, help="other concepts of the family for specificity")
    group.add_argument("--batch-size", type=int, default=8, help="images per pipeline call")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval-edit", help="evaluate a stored edit (before/after CLIP scores)")
    parser.add_argument("edit_id", metavar="EDIT_ID", help="an edit under <artifacts>/edits/")
    parser.add_argument("--artifacts", help="artifact root (default $LOCOLAB_ARTIFACTS or artifacts/)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    add_eval_options(parser)
    parser.set_defaults(func=run)


def run_eval(model, edit, args) -> dict:
    """Evaluate ``edit`` on ``model`` with the parsed evaluation options; prints and returns the summary."""
    seeds = parse_ints(args.seeds, "seeds")
    settings = Settings.defaults(model.spec, args.steps, args.guidance, args.size)
    default = model.spec.scorer or (TINY_SCORER if model.spec.builtin else DEFAULT_SCORER)
    scorer = load_scorer(args.scorer or default)
    root = resolve_root(args.artifacts)
    summary = evaluate(model, edit, scorer, settings, seeds, root, args.batch_size, args.unrelated, args.other_concepts)
    def number(key: str, digits: int = 2) -> str:
        value = summary.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    print(f"evaluated {edit.edit_id} with {scorer.scorer_id}: efficacy {number('efficacy')} "
          f"(before {number('efficacy_before')}, drop {number('efficacy_drop')}), "
          f"generalization {number('generalization')} (before {number('generalization_before')}, "
          f"drop {number('generalization_drop')}), specificity {number('specificity', 3)}")
    return summary


def run(args) -> None:
    edit = load_edit(args.artifacts, args.edit_id)
    run_eval(load_model(edit.meta["model"], device=args.device, dtype=args.dtype), edit, args)
