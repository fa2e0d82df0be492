"""Efficacy and preservation against the number of concepts in one edit (``locolab many-concepts``): the first 1, 2,
4, ... concepts of a list edited in one solve, each edit evaluated with the battery; per count, each concept's
efficacy (its own images' rate change, ``battery.concept_efficacy``) and the preservation of the rest (the family's
concepts not edited, the unrelated prompts, the paired distances of the preservation set)."""

import dataclasses
from collections.abc import Callable

from locolab.compute.edit.evaluation import evaluate
from locolab.compute.edit.request import make_request, stored_or_built
from locolab.contract.errors import UserError
from locolab.contract.method_grid import interval
from locolab.contract.specs import EditSpec, EvalSpec


def default_counts(size: int) -> list[int]:
    """1, 2, 4, ... below ``size``, then ``size``."""
    counts, count = [], 1
    while count < size:
        counts.append(count)
        count *= 2
    return [*counts, size]


def check_counts(counts: list[int], size: int) -> list[int]:
    """``counts`` sorted and each once; each must be at most ``size`` (the concepts given)."""
    over = [count for count in counts if count > size]
    if over:
        raise UserError(f"--counts {','.join(map(str, over))}: more than the {size} concepts given; give at most "
                        f"{size} or more --concepts")
    return sorted(set(counts))


def run(spec: EditSpec, evaluation: EvalSpec, concepts: list[str], counts: list[int], root: str, dtype: str,
        model: Callable, plan) -> list[dict]:
    """One edit per count (the first ``count`` of ``concepts``, otherwise as ``spec``), each evaluated as ``plan``
    says (``cli.eval_edit.plan_eval``); edits and evaluations already stored are reused.

    Returns:
        per count: {"count", "edit_id", "eval_id", "summary"} (the evaluation's ``eval.json``).
    """
    found = []
    for count in counts:
        first = concepts[:count]
        edited = dataclasses.replace(spec, concept=first[0], concepts=tuple(first) if count > 1 else None)
        edit, _ = stored_or_built(root, make_request(edited, dtype, root=root), model)
        summary = evaluate(model(), edit, plan.scorer, plan.settings, list(evaluation.seeds), root,
                           evaluation.batch_size, evaluation.unrelated, evaluation.other_concepts)
        found.append({"count": count, "edit_id": edit.edit_id, "eval_id": summary["eval_id"], "summary": summary})
    return found


def _efficacy(battery: dict, concept: str) -> tuple[str, str]:
    """(detector attribute, rate before -> after with the change's interval) of one concept's first efficacy row."""
    rows = (battery.get("by_concept") or {}).get(concept)
    if rows is None:  # a single-concept edit: the battery's own concept rows are this concept's
        rows = [r for r in battery["detection"] if r["group"] == "concept" and r["role"] == "efficacy" and r["units"]]
    if not rows:
        return "-", "n/a"
    row = rows[0]
    return row["attribute"], (f"{row['before']:.2f} -> {row['after']:.2f}, change "
                              + interval(row["change"], row["change_low"], row["change_high"], signed=True)
                              + f" ({row['units']} images)")


def _worst(battery: dict, group: str) -> str:
    """The specificity row of ``group`` that fell most (ties: the interval reaching lowest), with its interval."""
    rows = [r for r in battery["detection"] if r["group"] == group and r["role"] == "specificity" and r["units"]]
    if not rows:
        return "none left"
    row = min(rows, key=lambda r: (r["change"], r["change_high"]))
    return (f"{row['attribute']} {row['before']:.2f} -> {row['after']:.2f}, "
            + interval(row["change"], row["change_low"], row["change_high"], signed=True) + f" ({row['units']})")


def table_lines(found: list[dict], concepts: list[str]) -> list[str]:
    """Per count: each edited concept's efficacy, then the preservation of the rest: the worst rate change among the
    family's concepts not edited and among the unrelated prompts, 1 - SSIM and the share of preservation images
    changed, with their intervals, and the flags."""
    lines = []
    for run_ in found:
        summary, battery = run_["summary"], run_["summary"]["battery"]
        kept = battery.get("preservation") or {}
        ssim, changed = kept.get("ssim_distance"), kept.get("changed")
        lines.append(f"{run_['count']} concept(s) ({run_['edit_id']}, evaluation {run_['eval_id']}, "
                     f"{battery['level']:.0%} intervals):")
        for concept in concepts[:run_["count"]]:
            attribute, text = _efficacy(battery, concept)
            drop = (summary.get("by_concept") or {}).get(concept, summary)
            lines.append(f"  efficacy   {concept:<16}{attribute:<11}{text}; CLIP score drop "
                         + interval(drop.get("efficacy_score_drop"), drop.get("efficacy_score_drop_low"),
                                    drop.get("efficacy_score_drop_high")))
        lines.append(f"  preserved  other concepts: worst {_worst(battery, 'other_concepts')}; unrelated: worst "
                     f"{_worst(battery, 'unrelated')}")
        lines.append((f"  preserved  {kept['units']} images: 1 - SSIM "
                      + interval(ssim["mean"], ssim["low"], ssim["high"], digits=3) + ", changed "
                      + interval(changed["share"], changed["low"], changed["high"]) if kept
                      else "  preserved  no preservation images left (every one names an edited concept)")
                     + f"; flags {len(battery['flags'])}")
    return lines
