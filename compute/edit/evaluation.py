"""Evaluate an edit: the same prompts and seeds generated before and after it, scored with CLIP (docs/method.md §4)
and judged by the evaluation battery (``compute/edit/battery.py``, docs/method.md §4.2).

Groups of prompts:
    efficacy: the edit's own source prompts, scored against the concept's score text;
    generalization: held-out prompts with the concept, scored the same way;
    robustness: the concept paraphrased, misspelled and named indirectly (``attributes.robustness_prompts``), scored
        the same way (the battery reports the concept's detection rate on them);
    other_concepts: the family's other concepts (one held-out prompt each), scored against their own score text;
    unrelated: generic prompts (the preservation set), scored against themselves;
    target: the target prompt, scored against the concept's score text (the reference efficacy is measured by).

A fact edit (a family with a ``new_fact_text``: facts) is also scored against the new fact, from the same images:
    new_fact: the efficacy and generalization images, scored against the new fact's text;
    new_fact_reference: the target prompt's images, scored against the new fact's text (what the new fact scores).
The old fact is the concept's score text, so a fact edit that works makes efficacy's score fall and new_fact's rise.

An evaluation is identified by its settings (scorer, seeds, steps, guidance, size, how many unrelated prompts and
other concepts): its ``eval_id`` is a digest of them, like a sweep unit's id. Its scores go to
``tables/edit_scores/part-<edit_id>-<eval_id>.parquet``, its images and summary (``eval.json``) to
``edits/<edit_id>/evals/<eval_id>/``, all under the artifact root and written atomically (the summary last, so it
marks completion). Evaluating again with the same settings returns the stored result; other settings are stored
beside it, never over it.
"""

import datetime
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from locolab.compute.edit import attack as edit_attack
from locolab.compute.edit import battery as edit_battery
from locolab.compute.edit.closed_form import Edit, applied
from locolab.compute.generation import NOISE_SOURCE, Case, generate
from locolab.compute.grid import quantize, to_pil
from locolab.compute.models.loading import Model
from locolab.compute.settings import Settings
from locolab.contract.catalog.attributes import (
    DEFAULT_PROMPT_SET,
    SUBSET_SEED,
    attribute_family,
    preservation_prompts,
    robustness_prompts,
)
from locolab.contract.errors import UserError
from locolab.contract.intervals import RESAMPLES, SEED, ratio_drop_interval, ratio_interval, rng_for, wilson
from locolab.contract.names import EDIT_SUMMARY, EVAL_SETTINGS, eval_folder, renamed_metrics
from locolab.contract.store import (
    Store,
    atomic_write,
    exists,
    file_problem,
    is_url,
    join,
    part_path,
    png_ends,
    read_bytes,
    remove_stale_temps,
    resolve_root,
    write_png_atomic,
    write_table,
)
from locolab.contract.summaries import DEFAULT_LEVEL

PHASES = ("before", "after")
CONCEPT_GROUPS = ("efficacy", "generalization")  # the concept's prompts: the battery's ``concept`` rows


@dataclass(frozen=True)
class EvalPrompt:
    """One evaluation prompt, the group it belongs to and the text its images are scored against."""

    group: str
    prompt: str
    score_text: str


def eval_prompts(meta: dict, unrelated: int | None = None, other_concepts: int = 3) -> list[EvalPrompt]:
    """The evaluation prompts of an edit (see the module docstring).

    Args:
        meta: the edit's record (``family``, ``concept``, ``target``, ``source_prompts``).
        unrelated: how many of the prompt set's preservation prompts to use: None for all of them (the paper's
            setting), else a random subset of that many (``attributes.preservation_prompts``, for CPU runs).
        other_concepts: how many of the family's other concepts to use.
    """
    prompt_set = meta.get("prompt_set", DEFAULT_PROMPT_SET)
    family = attribute_family(meta["family"], prompt_set)
    concept = meta["concept"]
    edited = meta.get("prompts_by_concept", {concept: meta["source_prompts"]})  # a multi-concept edit: each concept's
    prompts = []
    for group, prompts_of in (("efficacy", edited.get), ("generalization", family.held_out_prompts),
                              ("robustness", lambda c: list(robustness_prompts(prompt_set, family.name, c).values()))):
        prompts += [EvalPrompt(group, p, family.score_text_for(c)) for c in edited for p in prompts_of(c)]
    others = [c for c in family.concepts if c not in edited][:other_concepts]
    prompts += [EvalPrompt("other_concepts", family.held_out_prompts(c)[0], family.score_text_for(c)) for c in others]
    prompts += [EvalPrompt("unrelated", p, p) for p in preservation_prompts(prompt_set, concept, unrelated)
                if not any(c.lower() in p.lower() for c in edited)]
    prompts += [EvalPrompt("target", meta["target"], family.score_text_for(c)) for c in edited]
    return prompts


def unrelated_count(meta: dict, unrelated: int | None) -> int | None:
    """``unrelated`` as it is evaluated: None (all of them) when it asks for the whole preservation set or more, so
    an evaluation's settings (and its id) name the prompts it used, not the number asked for."""
    available = len(preservation_prompts(meta.get("prompt_set", DEFAULT_PROMPT_SET), meta["concept"]))
    return None if unrelated is None or unrelated >= available else unrelated


NEW_FACT_GROUPS = {"efficacy": "new_fact", "generalization": "new_fact", "target": "new_fact_reference"}


def new_fact_text(meta: dict) -> str | None:
    """The CLIP text of the new fact a fact edit writes in (its target), or None for a family without facts."""
    family = attribute_family(meta["family"], meta.get("prompt_set", DEFAULT_PROMPT_SET))
    return family.new_fact_text_for(meta["target"])


def summarize_new_fact(rows: list[dict]) -> dict:
    """The update a fact edit makes, from score rows (empty for other edits).

    ``new_fact_score_before`` / ``_after``: the mean score (prompts averaged over seeds) of the edit's own and
    held-out prompts against the new fact; ``new_fact_reference``: the target prompt's mean score against it on the
    original model; ``new_fact_gain``: (after - before) / (reference - before), 1 = the prompts now show the new fact
    as much as the target prompt does, 0 = unchanged. ``old_fact_score_before`` / ``_after``: the same prompts against
    the old fact (the concept's score text). None where a denominator is 0.
    """
    def mean(groups: tuple[str, ...], phase: str) -> float | None:
        by_prompt = {}
        for row in rows:
            if row["group"] in groups and row["phase"] == phase:
                by_prompt.setdefault(row["prompt"], []).append(row["score"])
        return float(np.mean([np.mean(v) for v in by_prompt.values()])) if by_prompt else None

    if mean(("new_fact",), "before") is None:
        return {}
    summary = {f"{name}_score_{phase}": mean(groups, phase) for phase in PHASES
               for name, groups in (("old_fact", ("efficacy", "generalization")), ("new_fact", ("new_fact",)))}
    reference = mean(("new_fact_reference",), "before")
    gap = reference - summary["new_fact_score_before"]
    summary.update(new_fact_reference=reference, new_fact_gain=(
        summary["new_fact_score_after"] - summary["new_fact_score_before"]) / gap if gap else None)
    return summary


def _generate(model: Model, cases: list[Case], settings: Settings, batch_size: int,
              progress: Callable[[int], None]) -> np.ndarray:
    # Scored as stored: 8-bit, like the sweep's images, so scores reproduce from the PNGs. Each call encodes its
    # prompts anew (``generate`` makes its own encoder cache), so a text-encoder edit applied in between takes effect.
    batches = []
    for batch in generate(model, cases, settings, batch_size):
        batches.append(batch)
        progress(len(batch))
    return quantize(np.concatenate(batches))


def summarize(rows: list[dict], level: float = DEFAULT_LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Summary metrics from score rows (one per prompt x seed x phase); the names are ``contract.names.EVAL_METRICS``.

    For efficacy and generalization, two kinds of number (docs/statistics.md):
    ``<group>_score_drop``: the normalized drop of the mean score, (before - after) / (before - target reference),
    LocoGen's measure (1 = as far from the concept as the target prompt, 0 = unchanged), with a bootstrap interval
    (before/after pairs of one image resampled together, the target reference's images on their own).
    ``<group>_prompt_rate`` / ``<group>_image_rate``: the fraction of prompts (scores averaged over seeds) / of
    images whose score fell below the target reference (the target prompt's mean score on the original model), after
    the edit, with a Wilson interval; ``..._before`` the same before it. An edit that makes images as unlike the
    concept as the target prompt's puts about half of them below that mean: read the rates next to the drop.
    specificity: mean score of unrelated prompts after the edit / before it (1 = fully retained), with a bootstrap
    interval over the prompts (each prompt's seed-mean after and before resampled together) and their count
    (``unrelated_prompts``); the same for the family's other concepts (``other_concepts_retained``). Groups without
    prompts are left out.

    Args:
        rows: score rows with ``group``, ``phase``, ``prompt``, ``seed`` and ``score``.
        level: the intervals' coverage.
        resamples, seed: the bootstrap's.
    """
    def scores(group, phase) -> dict[tuple[str, int], float]:
        return {(row["prompt"], row["seed"]): row["score"] for row in rows
                if row["group"] == group and row["phase"] == phase}

    def prompt_means(by_image) -> dict[str, float]:
        by_prompt = {}
        for (prompt, _), score in by_image.items():
            by_prompt.setdefault(prompt, []).append(score)
        return {prompt: float(np.mean(values)) for prompt, values in by_prompt.items()}

    def mean_by_prompt(by_image):
        return np.array(list(prompt_means(by_image).values()))

    present = {row["group"] for row in rows}
    target = np.array(list(scores("target", "before").values()))
    reference = float(target.mean())
    summary = {"target_reference": reference, "level": level}
    for group in ("efficacy", "generalization"):
        if group not in present:
            continue
        before, after = scores(group, "before"), scores(group, "after")
        images = sorted(before.keys() & after.keys(), key=str)
        paired_before = np.array([before[key] for key in images])
        paired_after = np.array([after[key] for key in images])
        drop, low, high = ratio_drop_interval(paired_before, paired_after, target, level, resamples,
                                              rng_for(seed, "edit", group))
        summary.update({f"{group}_score_before": float(paired_before.mean()),
                        f"{group}_score_after": float(paired_after.mean()),
                        f"{group}_score_drop": None if np.isnan(drop) else drop,
                        f"{group}_score_drop_low": None if np.isnan(low) else low,
                        f"{group}_score_drop_high": None if np.isnan(high) else high})
        for unit, by_phase in (("prompt", {phase: mean_by_prompt(s) for phase, s in (("before", before),
                                                                                      ("after", after))}),
                               ("image", {"before": paired_before, "after": paired_after})):
            below = {phase: int((values < reference).sum()) for phase, values in by_phase.items()}
            n = len(by_phase["after"])
            rate_low, rate_high = wilson(below["after"], n, level)
            summary.update({f"{group}_{unit}_rate": below["after"] / n,
                            f"{group}_{unit}_rate_before": below["before"] / len(by_phase["before"]),
                            f"{group}_{unit}_rate_low": rate_low, f"{group}_{unit}_rate_high": rate_high,
                            f"{group}_{unit}s": n, f"{group}_{unit}s_below": below["after"]})
    for group, name in (("unrelated", "specificity"), ("other_concepts", "other_concepts_retained")):
        if group not in present:
            continue
        before, after = prompt_means(scores(group, "before")), prompt_means(scores(group, "after"))
        paired = sorted(before.keys() & after.keys())
        b, a = np.array([before[p] for p in paired]), np.array([after[p] for p in paired])
        summary[f"{group}_score_before"], summary[f"{group}_score_after"] = float(b.mean()), float(a.mean())
        ratio, low, high = ratio_interval(b, a, level, resamples, rng_for(seed, "edit", group))
        summary.update({name: ratio, f"{name}_low": None if np.isnan(low) else low,
                        f"{name}_high": None if np.isnan(high) else high, f"{group}_prompts": len(paired)})
    return summary


def concept_rows(rows: list[dict], meta: dict, concept: str) -> list[dict]:
    """The score rows of one concept of a multi-concept edit: its efficacy, generalization and target-reference rows
    (each scored against its score text)."""
    text = attribute_family(meta["family"], meta.get("prompt_set", DEFAULT_PROMPT_SET)).score_text_for(concept)
    return [row for row in rows
            if row["group"] in ("efficacy", "generalization", "target") and row["score_text"] == text]


def eval_settings(scorer_id: str, settings: Settings, seeds, unrelated: int, other_concepts: int,
                  attack: dict | None = None) -> dict:
    """The settings that identify an evaluation (``contract.names.EVAL_SETTINGS``, and the recovery attack's
    ``attack``: None without one)."""
    return {"scorer_id": scorer_id, "seeds": list(seeds), **settings.to_dict(), "unrelated": unrelated,
            "other_concepts": other_concepts, "attack": attack}


def eval_id(identity: dict) -> str:
    """The id of an evaluation: a digest of its settings (``eval_settings``), the same for every edit; an attack's
    settings join the digest (an evaluation without one keeps the id it had before attacks existed)."""
    values = [identity[k] for k in EVAL_SETTINGS] + ([identity["attack"]] if identity.get("attack") else [])
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:10]


def scores_part(edit_id: str, evaluation: str) -> str:
    """The part name of an evaluation's scores (``tables/edit_scores/part-<this>.parquet``)."""
    return f"{edit_id}-{evaluation}"


def eval_problem(root, edit_id: str, evaluation: str, rows: int) -> str | None:
    """Why a stored evaluation is not complete, or None: its summary must read back, its scores part must hold
    ``rows`` rows of this edit and evaluation, and each of its images must be present."""
    folder = join(root, eval_folder(edit_id, evaluation))
    try:
        summary = json.loads(read_bytes(f"{folder}/{EDIT_SUMMARY}"))
    except FileNotFoundError:
        return "no summary"
    except (OSError, ValueError):
        return "summary unreadable"
    if summary.get("battery", {}).get("version") != edit_battery.VERSION:
        return "evaluated without this version of the battery"
    path = part_path("edit_scores", scores_part(edit_id, evaluation), {}, root)
    if not exists(path):
        return "no scores part"
    try:
        data = Store(root).read(path)
    except Exception as error:  # whatever a damaged file raises (Arrow, thrift, OS), it is redone
        return f"scores part unreadable ({type(error).__name__})"
    problem = file_problem("edit_scores", data)
    if problem:
        return f"scores part: {problem}"
    if not {"eval_id", "image_path"} <= set(data.column_names):
        return "scores part lacks eval_id or image_path"
    if data.num_rows != rows or set(data["eval_id"].to_pylist()) != {evaluation}:
        return f"scores part has {data.num_rows} rows, not {rows}"
    missing = [p for p in data["image_path"].to_pylist() if not p or not exists(join(root, p))]
    if missing:
        return f"{len(missing)} image(s) missing"
    cut = [p for p in data["image_path"].to_pylist() if not png_ends(join(root, p))]
    return f"{len(cut)} image(s) cut off" if cut else None


def evaluate(model: Model, edit: Edit, scorer, settings: Settings, seeds: list[int], root=None,
             batch_size: int = 8, unrelated: int | None = None, other_concepts: int = 3,
             progress: Callable[[int, int], None] | None = None, attack_steps: int | None = None,
             attack_tokens: int | None = None) -> dict:
    """Generate, score and store an edit's evaluation; returns the summary (also written to ``eval.json``). An
    evaluation with the same settings already stored whole is returned as it is (``summary["reused"]`` True).

    Args:
        model: the unedited model the edit was made for.
        edit: the edit to evaluate.
        scorer: a CLIP scorer (``scoring.load_scorer``).
        settings: sampling settings shared by every image.
        seeds: the seeds of every prompt, the same before and after.
        root: artifact root (``store.resolve_root``).
        batch_size: images per pipeline call.
        unrelated, other_concepts: as ``eval_prompts`` (``unrelated_count``: asking for the whole set or more is all).
        progress: called with (images generated, images in all) after each batch.
        attack_steps: run the recovery attack (``compute.edit.attack``) with this budget (None: no attack); its
            images (group ``attack``: the efficacy and generalization prompts with the learned tokens, after the edit)
            are judged against the same prompts' and seeds' images before the edit.
        attack_tokens: the attack's soft tokens (default: as many as the concept has).
    """
    root = resolve_root(root)
    meta = edit.meta
    unrelated = unrelated_count(meta, unrelated)
    prompts = eval_prompts(meta, unrelated, other_concepts)
    cases = [Case(p.prompt, seed) for p in prompts for seed in seeds]
    texts = [p.score_text for p in prompts for _ in seeds]
    groups = [p.group for p in prompts for _ in seeds]
    # A fact edit's images of these groups are scored once more, against the new fact (same images, same paths).
    new_text = new_fact_text(meta)
    rescored = [i for i, group in enumerate(groups) if new_text and group in NEW_FACT_GROUPS]
    attacked = []  # (index of the plain case, prompt) of each attacked image
    if attack_steps is not None:
        problem = edit_attack.refusal(model.arch.name, model.name, meta)
        if problem:
            raise UserError(problem)
        attack_tokens = attack_tokens or edit_attack.concept_tokens(model.pipe.tokenizer, meta["concept"])
        attacked = [(i, prompts[i // len(seeds)]) for i, group in enumerate(groups) if group in CONCEPT_GROUPS]
    attack = None if attack_steps is None else edit_attack.settings(attack_steps, attack_tokens)
    identity = eval_settings(scorer.scorer_id, settings, seeds, unrelated, other_concepts, attack)
    evaluation = eval_id(identity)
    folder = eval_folder(edit.edit_id, evaluation)
    if eval_problem(root, edit.edit_id, evaluation, 2 * (len(cases) + len(rescored) + len(attacked))) is None:
        return {**renamed_metrics(json.loads(read_bytes(join(root, f"{folder}/{EDIT_SUMMARY}")))), "reused": True}
    if not is_url(root) and os.path.isdir(join(root, folder)):  # a killed evaluation's half-written images
        remove_stale_temps(join(root, folder))
    done = 0

    def count(images: int) -> None:
        nonlocal done
        done += images
        if progress:
            progress(done, 2 * len(cases) + len(attacked))

    images = {"before": _generate(model, cases, settings, batch_size, count)}
    with applied(model, edit, cfg=model.arch.cfg and settings.guidance > 1):
        images["after"] = _generate(model, cases, settings, batch_size, count)
    paths = {phase: [f"{folder}/{phase}-{i // len(seeds):03d}-seed{case.seed}.png" for i, case in enumerate(cases)]
             for phase in PHASES}
    battery_images = [edit_battery.Image(p.group, p.prompt, p.score_text, seed) for p in prompts for seed in seeds]
    learned = None
    if attacked:  # appended rows: before = the plain case's image before the edit, after = the attacked image
        training = [i for i, group in enumerate(groups) if group == "efficacy"]
        learned = edit_attack.learn(model, edit, [cases[i].prompt for i in training], images["before"][training],
                                    attack_steps, attack_tokens, batch_size)
        conditions = edit_attack.conditionings(model, learned, [p.prompt for _, p in attacked])
        with applied(model, edit, cfg=model.arch.cfg and settings.guidance > 1):
            found = _generate(model, [Case(c, cases[i].seed) for c, (i, _) in zip(conditions, attacked)], settings,
                              batch_size, count)
        source = [i for i, _ in attacked]
        images = {"before": np.concatenate([images["before"], images["before"][source]]),
                  "after": np.concatenate([images["after"], found])}
        paths["before"] += [paths["before"][i] for i in source]
        paths["after"] += [f"{folder}/attack-{i // len(seeds):03d}-seed{cases[i].seed}.png" for i in source]
        battery_images += [edit_battery.Image("attack", p.prompt, p.score_text, cases[i].seed) for i, p in attacked]
        cases += [cases[i] for i in source]
        texts += [p.score_text for _, p in attacked]
        groups += ["attack"] * len(attacked)
    battery, columns = edit_battery.run(meta, edit.edit_id, scorer, battery_images, images, paths, DEFAULT_LEVEL,
                                        None if learned is None else learned.record)
    rows = []
    for phase in PHASES:
        scores = scorer.score(images[phase], texts)
        new_scores = scorer.score(images[phase][rescored], [new_text] * len(rescored)) if rescored else []
        for i in range(len(cases)):
            if phase == "after" or i < len(cases) - len(attacked):  # an attacked row's before image is stored once
                write_png_atomic(join(root, paths[phase][i]), to_pil(images[phase][i]))

        def row(i: int, group: str, text: str, score: float, phase=phase) -> dict:
            return {"edit_id": edit.edit_id, "model": meta["model"], "family": meta["family"],
                    "concept": meta["concept"], "method": meta["method"], "group": group, "prompt": cases[i].prompt,
                    "seed": cases[i].seed, "phase": phase, "scorer_id": scorer.scorer_id, "score_text": text,
                    "score": float(score), "image_path": paths[phase][i], **settings.to_dict(), "eval_id": evaluation,
                    **columns[phase][i]}

        rows += [row(i, groups[i], texts[i], scores[i]) for i in range(len(cases))]
        rows += [row(i, NEW_FACT_GROUPS[groups[i]], new_text, score) for i, score in zip(rescored, new_scores)]
    write_table("edit_scores", rows, part=scores_part(edit.edit_id, evaluation), root=root)
    summary = {"edit_id": edit.edit_id, "eval_id": evaluation, **identity,
               "num_prompts": {g: sum(p.group == g for p in prompts) if g != "attack" else len(attacked) // len(seeds)
                               for g in dict.fromkeys(groups)},
               "unrelated_subset": None if unrelated is None else {"count": unrelated, "seed": SUBSET_SEED},
               "noise": NOISE_SOURCE,
               **({"old_fact_text": texts[groups.index("efficacy")], "new_fact_text": new_text} if new_text else {}),
               "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               **summarize(rows), **summarize_new_fact(rows), "battery": battery}
    if "concepts" in meta:  # a multi-concept edit: each concept's efficacy, its rows against its own target reference
        summary["by_concept"] = {concept: summarize(concept_rows(rows, meta, concept)) for concept in meta["concepts"]}
    atomic_write(join(root, f"{folder}/{EDIT_SUMMARY}"),
                 lambda file: file.write(json.dumps(summary, indent=2).encode()))
    return {**summary, "reused": False}
