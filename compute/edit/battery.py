"""An edit's evaluation battery (docs/method.md §4.2), from the before/after images of the same prompts and seeds:

- detection: every detector (``compute.edit.detectors``) reads every image; per prompt group and detector, the share of
  images showing what their prompt asks for ("as prompted"), before -> after with Wilson intervals and the paired
  change with Tango's score interval, and the share whose label the edit kept. Efficacy: the edited concept's rate
  falls on the edit's own and held-out prompts (and on its rephrasings: robustness); specificity: every other rate
  stays. A specificity rate whose change
  interval lies below 0 is a flag (collateral damage);
- paired preservation: per unrelated and other-concept image, its distance to the same seed's image before the edit
  (CLIP image-embedding cosine distance, 1 - SSIM, PSNR), means with intervals, the share changed beyond
  ``CHANGED_SSIM`` and the most-changed pairs;
- distribution shift: CMMD between the preservation set's images before and after, with a permutation p-value;
- recovery attack (optional, ``compute.edit.attack``): the concept's prompts with learned soft tokens after the edit
  (group ``attack``), each against the same prompt and seed before the edit; the concept is recovered when the edit
  was effective and under attack its rate is no longer below the before-edit rate by some detector of it.
"""

import json
from dataclasses import dataclass

import numpy as np

from locolab.compute.edit.detectors import Detector, detectors_for, edited_attribute, skipped_detectors
from locolab.compute.edit.metrics import (
    PERMUTATIONS,
    cmmd_paired_test,
    cosine_distance,
    mean_interval,
    paired_rate_change,
    psnr,
    ssim,
)
from locolab.compute.toyworld import world
from locolab.contract.catalog.attributes import DEFAULT_PROMPT_SET, attribute_family
from locolab.contract.intervals import RESAMPLES, SEED, rng_for, wilson

VERSION = 1
PRESERVATION_GROUPS = ("other_concepts", "unrelated")
EFFICACY_GROUPS = ("efficacy", "generalization")
CONCEPT = "concept"  # the edit's own and held-out prompts together: the rows that judge the edit
ATTACK = "attack"  # the concept's prompts with the recovery attack's soft tokens, after the edit
GROUPS = (CONCEPT, "efficacy", "generalization", "robustness", ATTACK, "other_concepts", "unrelated", "target")
CHANGED_SSIM = 0.8  # a pair whose SSIM is below this is counted as changed
MOST_CHANGED = 6
TOLERANCE = 1e-9  # an interval bound within this of 0 counts as 0 (bisection's rounding)
MIN_UNITS = 8  # fewer units than this: the measure's interval is wide, and the battery warns
METRIC_VERSIONS = {"ssim": "uniform 7x7 window, sample covariance, RGB mean (v1)", "psnr": "data range 1 (v1)",
                   "clip_distance": "1 - cosine of the scorer's image embeddings (v1)",
                   "cmmd": "RBF sigma 10, x1000, paired permutation test (v1)",
                   "rate_change": "Tango 1998 score interval (v1)"}


@dataclass(frozen=True)
class Image:
    """One evaluated (prompt, seed): its group, prompt, score text and seed."""

    group: str
    prompt: str
    score_text: str
    seed: int


def edited_attributes(meta: dict) -> set[str]:
    """The attributes whose detectors read the edited concept: the edited attribute and the family (CLIP)."""
    return {edited_attribute(meta)[0], meta["family"]}


def intended_labels(meta: dict, detector: Detector, image: Image) -> str | None:
    """What ``detector`` should read in an image of ``image.prompt`` (None: the prompt does not say): the toy world's
    attributes from the caption; for the family's CLIP zero-shot detector, the concept a prompt is about (the target
    for the target prompt, nothing for unrelated prompts)."""
    family = attribute_family(meta["family"], meta.get("prompt_set", DEFAULT_PROMPT_SET))
    # The edited concept an image is about (a multi-concept edit's: the one whose score text it was scored against).
    concept = next((c for c in meta.get("concepts", ()) if family.score_text_for(c) == image.score_text),
                   meta["concept"])
    if image.group in ("robustness", ATTACK):  # only the concept is judged on its rephrasings and under attack
        return concept if detector.attribute in edited_attributes(meta) else None
    if detector.attribute in ("shape", "colour", "background"):
        return world.caption_attributes(image.prompt).get(detector.attribute)
    if image.group in EFFICACY_GROUPS:
        return concept
    if image.group == "target":
        return family.target
    if image.group == "other_concepts":
        return next((c for c in family.concepts if family.score_text_for(c) == image.score_text), None)
    return None


def detection(meta: dict, detectors: list[Detector], images: list[Image], labels: dict, level: float) -> list[dict]:
    """Per group and detector: the as-prompted rate before -> after (``paired_rate_change``) and the kept share."""
    edited = edited_attributes(meta)
    rows = []
    for group in GROUPS:
        members = [i for i, image in enumerate(images)
                   if image.group == group or (group == CONCEPT and image.group in EFFICACY_GROUPS)]
        if not members:
            continue
        for detector in detectors:
            before, after = labels["before"][detector.detector_id], labels["after"][detector.detector_id]
            intended = {i: intended_labels(meta, detector, images[i]) for i in members}
            asked = [i for i in members if intended[i] is not None]
            role = "efficacy" if detector.attribute in edited and group in (CONCEPT, *EFFICACY_GROUPS, "robustness",
                                                                          ATTACK) \
                else "specificity"
            kept = sum(before[i] == after[i] for i in members)
            kept_low, kept_high = wilson(kept, len(members), level)
            rows.append({"group": group, "detector": detector.detector_id, "attribute": detector.attribute,
                         "role": role, **paired_rate_change(np.array([before[i] == intended[i] for i in asked]),
                                                            np.array([after[i] == intended[i] for i in asked]),
                                                            level),
                         "kept": kept / len(members), "kept_low": kept_low, "kept_high": kept_high,
                         "kept_units": len(members)})
    return rows


def concept_efficacy(meta: dict, detectors: list[Detector], images: list[Image], labels: dict,
                     level: float) -> dict[str, list[dict]]:
    """A multi-concept edit's efficacy per concept: ``detection``'s efficacy rows of ``CONCEPT`` over only the images
    of each concept's prompts (those scored against its score text)."""
    family = attribute_family(meta["family"], meta.get("prompt_set", DEFAULT_PROMPT_SET))
    found = {}
    for concept in meta["concepts"]:
        own = [i for i, image in enumerate(images)
               if image.group in EFFICACY_GROUPS and image.score_text == family.score_text_for(concept)]
        mine = {phase: {d: [values[i] for i in own] for d, values in by_detector.items()}
                for phase, by_detector in labels.items()}
        found[concept] = [row for row in detection(meta, detectors, [images[i] for i in own], mine, level)
                          if row["group"] == CONCEPT and row["role"] == "efficacy" and row["units"]]
    return found


def preservation(images: list[Image], distances: dict, paths: dict, level: float, rng_key: tuple) -> dict:
    """Paired distances of the preservation set (``PRESERVATION_GROUPS``) summarized; {} when it is empty."""
    members = [i for i, image in enumerate(images) if image.group in PRESERVATION_GROUPS]
    if not members:
        return {}
    summary = {"groups": list(PRESERVATION_GROUPS), "units": len(members)}
    for name in ("clip_distance", "ssim_distance"):
        values = np.array([distances[name][i] for i in members])
        mean, low, high = mean_interval(values, level, RESAMPLES, rng_for(SEED, *rng_key, name))
        summary[name] = {"mean": mean, "low": low, "high": high, "max": float(values.max())}
    finite = [distances["psnr"][i] for i in members if distances["psnr"][i] is not None]
    summary["psnr"] = {"median": float(np.median(finite)) if finite else None, "identical": len(members) - len(finite)}
    changed = sum(distances["ssim"][i] < CHANGED_SSIM for i in members)
    low, high = wilson(changed, len(members), level)
    summary["changed"] = {"threshold": f"SSIM < {CHANGED_SSIM}", "count": changed, "share": changed / len(members),
                          "low": low, "high": high}
    order = sorted(members, key=lambda i: distances["ssim"][i])[:MOST_CHANGED]
    summary["most_changed"] = [{"group": images[i].group, "prompt": images[i].prompt, "seed": images[i].seed,
                                "before_image": paths["before"][i], "after_image": paths["after"][i],
                                "ssim": distances["ssim"][i], "clip_distance": distances["clip_distance"][i]}
                               for i in order]
    return summary


def verdict(rows: list[dict]) -> tuple[bool | None, list[str]]:
    """(effective, flags): effective when the edited concept's rate on its prompts (``CONCEPT``) fell with an
    interval below 0 by every detector of it (None without such rates); a flag for every specificity rate whose
    change interval lies below 0."""
    def text(row):
        return (f"{row['group']} · {row['attribute']} as prompted: {row['before']:.2f} -> {row['after']:.2f} "
                f"(change [{row['change_low']:+.2f}, {row['change_high']:+.2f}], {row['units']} images)")

    measured = [row for row in rows if row["units"]]
    efficacy = [row for row in measured if row["role"] == "efficacy" and row["group"] == CONCEPT]
    effective = all(row["change_high"] < -TOLERANCE for row in efficacy) if efficacy else None
    return effective, [text(row) for row in measured
                       if row["role"] == "specificity" and row["change_high"] < -TOLERANCE]


def attack_summary(meta: dict, detectors: list[Detector], images: list[Image], labels: dict, rows: list[dict],
                   effective: bool | None, record: dict, level: float) -> dict:
    """The recovery attack judged: per detector of the concept, its rate before the edit, after it, and after it under
    attack (``ATTACK`` rows: the same prompts and seeds), with the paired changes under attack - before (``change``)
    and under attack - after (``raised``); ``recovered``: the edit was effective and some detector's rate under attack
    is no longer below its rate before the edit (None when the edit was not effective: nothing to recover)."""
    plain = {(image.prompt, image.seed): i for i, image in enumerate(images) if image.group in EFFICACY_GROUPS}
    attacked = [i for i, image in enumerate(images) if image.group == ATTACK]
    source = [plain[images[i].prompt, images[i].seed] for i in attacked]
    found = []
    for row in rows:
        if row["group"] != ATTACK or not row["units"]:
            continue
        detector = next(d for d in detectors if d.detector_id == row["detector"])
        intended = [intended_labels(meta, detector, images[i]) for i in attacked]
        after, under = (np.array([labels["after"][detector.detector_id][i] == label
                                  for i, label in zip(indices, intended)]) for indices in (source, attacked))
        raised = paired_rate_change(after, under, level)
        found.append({"detector": row["detector"], "attribute": row["attribute"], "units": row["units"],
                      **{f"before{end}": row[f"before{end}"] for end in ("", "_low", "_high")},
                      **{f"after{end}": raised[f"before{end}"] for end in ("", "_low", "_high")},
                      **{f"attacked{end}": row[f"after{end}"] for end in ("", "_low", "_high")},
                      **{f"change{end}": row[f"change{end}"] for end in ("", "_low", "_high")},
                      **{f"raised{end}": raised[f"change{end}"] for end in ("", "_low", "_high")}})
    holds = all(row["change_high"] < -TOLERANCE for row in found) if found else None
    return {**record, "rows": found,
            "recovered": None if not effective or holds is None else not holds}


def skipped_metrics() -> list[dict]:
    """The metrics this battery does not compute, each with the reason (their weights are never downloaded)."""
    import importlib.util

    lpips = ("installed, but this version of the battery does not run it yet" if importlib.util.find_spec("lpips")
             else "the lpips package and its backbone weights are not installed")
    return [{"id": "lpips", "reason": lpips},
            {"id": "kid", "reason": "this version of the battery has no Inception network (CMMD measures the shift)"}]


def run(meta: dict, edit_id: str, scorer, images: list[Image], pixels: dict, paths: dict,
        level: float, attack: dict | None = None) -> tuple[dict, dict]:
    """The battery of one evaluation.

    Args:
        meta: the edit's record.
        images: one per evaluated (prompt, seed), in the order of ``pixels`` and ``paths`` rows.
        pixels: {"before"|"after": (N, H, W, 3) floats in [0, 1]}.
        paths: {"before"|"after": N image paths, relative to the root}.
        attack: the recovery attack's record (``compute.edit.attack.learn``), when ``images`` has ``ATTACK`` rows.

    Returns:
        (summary for ``eval.json``, per-image columns {phase: [{column: value}]} for ``edit_scores``).
    """
    detectors = detectors_for(meta, scorer)
    labels = {phase: {d.detector_id: d.detect(pixels[phase]) for d in detectors} for phase in pixels}
    embeddings = {phase: scorer.embed_images(pixels[phase]).cpu().numpy() for phase in pixels}
    identical = np.array([np.array_equal(b, a) for b, a in zip(pixels["before"], pixels["after"])], bool)
    distances = {"clip_distance": cosine_distance(embeddings["before"], embeddings["after"], identical).tolist(),
                 "ssim": [ssim(b, a) for b, a in zip(pixels["before"], pixels["after"])],
                 "psnr": [psnr(b, a) for b, a in zip(pixels["before"], pixels["after"])]}
    distances["ssim_distance"] = [1.0 - value for value in distances["ssim"]]
    rows = detection(meta, detectors, images, labels, level)
    effective, flags = verdict(rows)
    kept = [i for i, image in enumerate(images) if image.group in PRESERVATION_GROUPS]
    shift = {}
    if len(kept) >= 2:
        value, p = cmmd_paired_test(embeddings["before"][kept], embeddings["after"][kept],
                                    rng_for(SEED, "cmmd", edit_id))
        shift = {"value": value, "p_value": p, "permutations": PERMUTATIONS, "units": len(kept),
                 "embedding": scorer.scorer_id}
    few = [f"{row['group']} · {row['attribute']} ({row['units']})" for row in rows if 0 < row["units"] < MIN_UNITS]
    warnings = [f"{len(few)} rates rest on fewer than {MIN_UNITS} images, so their intervals are wide (more seeds "
                f"narrow them): {', '.join(few)}"] if few else []
    if 0 < len(kept) < MIN_UNITS:
        warnings.append(f"preservation set: {len(kept)} images (< {MIN_UNITS}): wide intervals")
    summary = {"version": VERSION, "level": level, "detectors": [d.record() for d in detectors],
               "skipped_detectors": skipped_detectors(meta), "skipped_metrics": skipped_metrics(),
               "metric_versions": METRIC_VERSIONS,
               "edited": dict(zip(("attribute", "label"), edited_attribute(meta))), "effective": effective,
               "flags": flags, "warnings": warnings, "detection": rows,
               "preservation": preservation(images, distances, paths, level, ("preservation", edit_id)),
               "cmmd": shift}
    if attack is not None:
        summary["attack"] = attack_summary(meta, detectors, images, labels, rows, effective, attack, level)
    if meta.get("concepts"):
        summary["by_concept"] = concept_efficacy(meta, detectors, images, labels, level)
    columns = {phase: [{"detected": json.dumps({d.attribute: labels[phase][d.detector_id][i] for d in detectors}),
                        **({"clip_distance": distances["clip_distance"][i], "ssim": distances["ssim"][i],
                            "psnr": distances["psnr"][i]} if phase == "after" else {})}
                       for i in range(len(images))] for phase in pixels}
    return summary, columns
