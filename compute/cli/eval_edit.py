"""``locolab eval-edit EDIT_ID``: generate before/after images of a stored edit with the same seeds, score them with
CLIP and store the scores and a summary: per group the normalized score drop and the rates of prompts and images
pushed below the target reference, with intervals (efficacy, generalization), and specificity. An evaluation is
identified by its settings: the same settings again return the stored one, other settings are stored beside it."""

from dataclasses import dataclass

from locolab.compute.cli import status
from locolab.compute.cli.options import (
    add_device_options,
    add_eval_options,
    add_offload_option,
    check_image_count,
    spec_values,
)
from locolab.compute.edit.attack import refusal
from locolab.compute.edit.battery_report import table_lines
from locolab.compute.edit.evaluation import CONCEPT_GROUPS, eval_prompts, evaluate
from locolab.compute.edit.store import RECORD_KEYS, load_edit
from locolab.compute.models.loading import load_model, resolve
from locolab.compute.scoring import ClipScorer, default_scorer, load_scorer
from locolab.compute.settings import Settings
from locolab.contract.errors import UserError
from locolab.contract.specs import EvalSpec
from locolab.contract.store import Store, resolve_root


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval-edit", help="evaluate a stored edit (before/after CLIP scores)")
    parser.add_argument("edit_id", metavar="EDIT_ID", help="an edit under <artifacts>/edits/")
    parser.add_argument("--artifacts", help="artifact root (default $LOCOLAB_ARTIFACTS or artifacts/)")
    add_device_options(parser)
    add_offload_option(parser)
    add_eval_options(parser)
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class EvalPlan:
    """The checked evaluation options: everything ``run_eval`` needs but the model."""

    settings: Settings
    scorer: ClipScorer


def plan_eval(model_name: str, meta: dict, evaluation: EvalSpec, allow_many: bool) -> EvalPlan:
    """Check the evaluation before anything is written or computed: sampling settings for the model, the image count
    against the cap (unless ``allow_many``), and the scorer (loaded here, so a missing one fails now).

    Args:
        model_name: the edited model (its defaults fill the settings not given).
        meta: the edit's record or request (its prompts are counted).
    """
    spec = resolve(model_name)
    problem = evaluation.attack and refusal(spec.arch, model_name, meta)
    if problem:
        raise UserError(problem)
    settings = Settings.defaults(spec, evaluation.steps, evaluation.guidance, evaluation.size)
    prompts = eval_prompts(meta, evaluation.unrelated, evaluation.other_concepts)
    attacked = sum(p.group in CONCEPT_GROUPS for p in prompts) if evaluation.attack else 0  # its own images
    check_image_count((2 * len(prompts) + attacked) * len(evaluation.seeds), allow_many)
    return EvalPlan(settings, load_scorer(evaluation.scorer or default_scorer(spec)))


def run_eval(model, edit, plan: EvalPlan, evaluation: EvalSpec, root: str) -> dict:
    """Evaluate ``edit`` on ``model`` with the checked evaluation; prints and returns the summary."""
    status.report(stage="evaluating", edit_id=edit.edit_id)
    summary = evaluate(model, edit, plan.scorer, plan.settings, list(evaluation.seeds), root, evaluation.batch_size,
                       evaluation.unrelated, evaluation.other_concepts,
                       progress=lambda done, total: status.report(done=done, total=total),
                       attack_steps=evaluation.attack_steps if evaluation.attack else None,
                       attack_tokens=evaluation.attack_tokens)
    status.report(stage="finished", evaluated=True, eval_id=summary["eval_id"])

    settings = (f"{summary['scorer_id']}, seeds {summary['seeds']}, {summary['steps']} steps, guidance "
                f"{summary['guidance']:g}, {summary['width']}x{summary['height']} px, "
                f"{summary['num_prompts'].get('unrelated', 0)} unrelated prompts"
                f"{' (all)' if summary['unrelated'] is None else ''}, {summary['other_concepts']} other concepts")
    if evaluation.unrelated is not None and summary["unrelated"] is None:
        print(f"note: --unrelated {evaluation.unrelated} asks for at least the whole preservation set of "
              f"{edit.meta['concept']}: all {summary['num_prompts'].get('unrelated', 0)} of its prompts were used")
    if summary["reused"]:
        print(f"evaluation {summary['eval_id']} of {edit.edit_id} with these settings already exists "
              "(not recomputed)")
    level = f"{summary['level']:.0%} intervals" if "level" in summary else "evaluated before intervals were recorded"
    print(f"evaluated {edit.edit_id} (evaluation {summary['eval_id']}: {settings}; {level}):")
    for line in summary_lines(summary):
        print(f"  {line}")
    for line in table_lines(summary["battery"]) if "battery" in summary else []:
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
    root = resolve_root(args.artifacts)
    Store(root).check_writable()
    edit = load_edit(root, args.edit_id, RECORD_KEYS)
    evaluation = EvalSpec(**spec_values(EvalSpec, args))
    dtype = edit_dtype(edit.meta, args.dtype)
    plan = plan_eval(edit.meta["model"], edit.meta, evaluation, args.allow_many_images)
    run_eval(load_model(edit.meta["model"], device=args.device, dtype=dtype, offload=args.offload, fp8=args.fp8),
             edit, plan, evaluation, root)


def edit_dtype(meta: dict, asked: str) -> str:
    """The dtype to evaluate an edit in: the one it was made in (part of its id; an evaluation's id does not name a
    dtype, so evaluating in another would store numbers of another model under the same id). ``asked`` is
    ``--dtype``: ``auto`` or the edit's own dtype; any other is refused."""
    made = meta.get("dtype")
    if made is None or asked in ("auto", made):
        return asked if made is None else made
    raise UserError(f"edit {meta['edit_id']} was made in {made} weights and is evaluated in them: drop --dtype or "
                    f"pass --dtype {made} (to evaluate in {asked}, make the edit with --dtype {asked})")
