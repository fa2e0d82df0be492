"""What an edit is asked to do, and doing it: the request record (the edit's id is a digest of it), the layers taken
from a stored sweep, and the edit computed on a loaded model (LocoEdit, all layers, neurons or DiffQuickFix).

Usage::

    request = make_request("tiny-sd1", "style", "van gogh", layers=[8, 9])
    edit = build_edit(load_model("tiny-sd1"), request)
"""

import datetime
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence

import torch

from compute import edit as loco
from compute import quickfix
from compute.attributes import attribute_family, prompt_set_for
from compute.edit_store import edit_dir, load_edit, save_edit
from compute.models.architectures import SINGLE
from compute.models.loading import Model, layer_count
from compute.neuron import DEFAULT_POSITION, rank_units
from compute.provenance import versions
from compute.sweep_config import load_config
from contract.errors import UserError
from contract.names import (
    CHOSEN_LAYERS,
    CLOSED_FORM,
    METHODS,
    NEURON_SELECTIONS,
    POSITIONS,
    QUICKFIX_RECIPES,
    default_positions,
)
from contract.store import Store
from contract.summaries import concept_summary

DEFAULT_TOPK = 50


def window_from_run(root, run_id: str, model: str, family: str, concept: str, threshold: float) -> list[int]:
    """The layers of the minimal localizing window of ``concept`` in sweep run ``run_id`` (a run id, or the path of
    its YAML config; with several scorers, the first scorer id in sort order decides), judged by the summaries' rule
    (docs/statistics.md): the paired test shows the window removes more than ``threshold`` of the gap, adjusted over
    the concept's windows, the concept measurable."""
    if run_id.endswith((".yaml", ".yml")) and os.path.isfile(run_id):
        run_id = load_config(run_id).run_id
    store = Store(root)
    con = store.connect()
    rows = con.execute("SELECT DISTINCT model FROM scores WHERE run_id = ? AND family = ? AND concept = ?",
                       [run_id, family, concept]).fetchall()
    if not rows:
        raise UserError(f"run {run_id!r} has no {family} scores for concept {concept!r} under {store.root}")
    if (model,) not in rows:
        raise UserError(f"run {run_id!r} scored {concept!r} on {rows[0][0]}, not on {model}")
    found = sorted((w for w in concept_summary(con, threshold, [run_id]).to_pylist()
                    if (w["model"], w["family"], w["concept"]) == (model, family, concept)),
                   key=lambda w: w["scorer_id"])
    if not found[0]["localizes"]:
        raise UserError(f"run {run_id!r} does not localize {concept!r} at threshold {threshold} "
                        f"({found[0]['verdict']}): pass --layers, or lower --threshold")
    start, size = found[0]["window_start"], found[0]["window_size"]
    return list(range(start, start + size))


def edit_id(request: dict) -> str:
    """``<concept slug>-<method>-<digest of the request>``: the same request always names the same edit."""
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", request["concept"].lower()).strip("-")[:40] or "concept"
    return f"{slug}-{request['method']}-{digest}"


def _check(method, concept, lam, topk, layers, from_run, positions, preserve_others, selection) -> None:
    if method not in METHODS:
        raise UserError(f"unknown edit method {method!r}: use one of {', '.join(METHODS)}")
    if not concept.strip():
        raise UserError("empty concept: name the concept to edit")
    if method != "neuron" and not lam > 0:
        raise UserError(f"--lambda must be > 0, got {lam}")
    if method == "neuron" and topk < 0:
        raise UserError(f"--topk must be >= 0, got {topk}")
    if method == "all-layers" and (layers or from_run):
        raise UserError("--method all-layers edits every layer: drop --layers/--from-run")
    if method in QUICKFIX_RECIPES and (layers or from_run):
        raise UserError(f"--method {method} edits text-encoder layer 0, not UNet layers: drop --layers/--from-run")
    if selection not in NEURON_SELECTIONS:
        raise UserError(f"unknown neuron selection {selection!r}: use one of {', '.join(NEURON_SELECTIONS)}")
    if method not in CLOSED_FORM and (positions or preserve_others):
        raise UserError(f"--positions/--preserve-others are for the closed-form methods, not --method {method}")
    if positions not in (None, *POSITIONS):
        raise UserError(f"unknown key positions {positions!r}: use one of {', '.join(POSITIONS)}")
    if method in CHOSEN_LAYERS and not (layers or from_run):
        raise UserError(f"--method {method} needs --layers (e.g. 8,9) or --from-run RUN_ID")


def make_request(model: str, family: str, concept: str, method: str = "loco", *, target: str | None = None,
                 layers: Sequence[int] | None = None, from_run: str | None = None, threshold: float = 0.5,
                 lam: float = loco.DEFAULT_LAMBDA, prompts: Sequence[str] | None = None, topk: int = DEFAULT_TOPK,
                 position: int = DEFAULT_POSITION, positions: str | None = None, preserve_others: bool = False,
                 selection: str = NEURON_SELECTIONS[0], prompt_set: str | None = None, root=None,
                 num_layers: int | None = None) -> dict:
    """What determines an edit (its id is a digest of this); no model is loaded.

    Args:
        model: the model's name (registry name, directory or hub id; for a model wrapped in memory, its name).
        family: the attribute family whose prompts are used (``style``, ``objects``, ``facts``, ``color``).
        concept: the concept to edit, e.g. ``"van gogh"``.
        method: ``loco``, ``all-layers``, ``neuron``, ``diffquickfix`` (the published recipe) or
            ``diffquickfix-family`` (ours; ``quickfix``).
        target: what the concept should become (default: the family's target).
        layers: UNet layers to edit (loco, neuron).
        from_run: instead of ``layers``, the minimal localizing window of this stored sweep (run id or YAML).
        threshold: with ``from_run``: fraction of the original-to-target gap a window must remove.
        lam: the ridge weight of the closed forms (> 0).
        prompts: source prompts containing the concept (default: the family's edit templates; ``diffquickfix``:
            the concept and its three augmentations, each paired with the same augmentation of the target).
        topk, position: neuron edit: units to hold, token position ranked.
        selection: neuron edit: ``per-matrix`` (top k of each matrix, the official code's) or ``pooled``.
        positions: closed forms: ``subject`` or ``subject+padding`` (default: the method's, as in its paper).
        preserve_others: closed forms: also map the family's other concepts to themselves (not in the paper).
        prompt_set: the prompt set of ``family`` (default: the registered model's, else ``paper``).
        root: the artifact root ``from_run`` is read from.
        num_layers: the model's layer count, for all-layers (default: read from its config by name).
    """
    _check(method, concept, lam, topk, layers, from_run, positions, preserve_others, selection)
    prompt_set = prompt_set_for(model, prompt_set)
    attributes = attribute_family(family, prompt_set)
    target = target if target is not None else attributes.target_for(concept)
    published = method == QUICKFIX_RECIPES[0] and not prompts  # the published recipe's own prompts
    request = {"model": model, "family": attributes.name, "prompt_set": prompt_set, "concept": concept,
               "target": target, "method": method,
               "source_prompts": list(prompts or (quickfix.augmented(concept) if published
                                                  else attributes.source_prompts(concept)))}
    if method in CLOSED_FORM:
        request["positions"] = positions or default_positions(method)
        request["preserve_prompts"] = ([p for c in attributes.concepts if c != concept
                                        for p in attributes.source_prompts(c)] if preserve_others else [])
    if method in QUICKFIX_RECIPES:
        request.update({"lambda": lam}, target_prompts=quickfix.augmented(target) if published
                       else [target] * len(request["source_prompts"]), bias_in_values=method == QUICKFIX_RECIPES[0])
        return request
    if from_run:
        request.update(from_run=from_run, threshold=threshold,
                       layers=window_from_run(root, from_run, model, attributes.name, concept, threshold))
    elif layers:
        request["layers"] = sorted(set(layers))
    else:
        request["layers"] = list(range(num_layers if num_layers is not None else layer_count(model)))
    if method == "neuron":
        concept_prompts, neutral_prompts = attributes.contrast_prompts(concept)
        request.update(topk=topk, selection=selection, position=position, concept_prompts=concept_prompts,
                       neutral_prompts=neutral_prompts)
    else:
        request["lambda"] = lam
    return request


def _unet_edit(model: Model, meta: dict) -> loco.Edit:
    if meta["method"] == "all-layers":  # FLUX's single-stream blocks have no text projections of their own
        meta["layers"] = [i for i in meta["layers"] if model.layers[i].block != SINGLE]
    layers = loco.check_layers(model, meta["layers"])
    meta.update(layer_paths=[model.layers[i].path for i in layers], num_layers=len(model.layers))
    if model.arch.segments:
        raise UserError(f"--method {meta['method']} is not available on {model.arch.name}: its text sequence holds the "
                        "concept twice (CLIP's and T5's tokens), and LocoLab keys one position per prompt")
    if meta["method"] == "neuron" and model.arch.stream:
        raise UserError(f"--method neuron ranks units on the text a layer reads, which {model.arch.name}'s joint "
                        "attention reads as a stream that changes every step: use --method loco")
    if model.arch.stream:
        meta["keys_read_at"] = {**loco.key_settings(model).to_dict(), "seed": loco.KEY_SEED}
    if meta["method"] == "neuron":
        units, _ = rank_units(model, layers, meta["concept_prompts"], meta["neutral_prompts"], meta["position"],
                              meta["topk"], meta["selection"])
        meta["units"] = {name: indices.tolist() for name, (indices, _) in units.items()}
        return loco.Edit(meta, units=units)
    by_layer = loco.layer_keys_values(model, layers, meta["concept"], meta["target"], meta["source_prompts"],
                                      padding=meta.get("positions") == POSITIONS[1],
                                      preserve=meta.get("preserve_prompts", ()))
    kv = by_layer[layers[0]]  # positions and counts are the same for every layer
    distinct = {id(k): k for k in by_layer.values()}.values()
    meta.update(token_positions=kv.positions, target_position=kv.target_position, num_keys=len(kv.keys),
                keys_rank=min(int(torch.linalg.matrix_rank(k.keys)) for k in distinct))
    if model.arch.edit_note:
        meta["note"] = model.arch.edit_note
    return loco.Edit(meta, weights=loco.edited_weights(model, loco.solve_factors(by_layer, meta["lambda"])))


def _quickfix_edit(model: Model, meta: dict) -> loco.Edit:
    encoders = quickfix.keys_values(model, meta["concept"], meta["target_prompts"], meta["source_prompts"],
                                    padding=meta["positions"] == POSITIONS[1],
                                    preserve=meta.get("preserve_prompts", ()))
    by_encoder = {kv.module.split(".", 1)[0]: kv for kv in encoders}
    meta.update(modules=[kv.module for kv in encoders],
                token_positions={name: [p[0] for p in kv.positions] for name, kv in by_encoder.items()},
                num_keys={name: len(kv.keys) for name, kv in by_encoder.items()},
                keys_rank={name: int(torch.linalg.matrix_rank(kv.keys)) for name, kv in by_encoder.items()})
    return loco.Edit(meta, weights=quickfix.edited_weights(model, encoders, meta["lambda"], meta["bias_in_values"]))


def build_edit(model: Model, request: dict) -> loco.Edit:
    """Compute the edit described by ``request`` (``make_request``) on ``model``."""
    started = time.perf_counter()
    meta = {"edit_id": edit_id(request), **request, "architecture": model.arch.name,
            "dtype": str(model.dtype).removeprefix("torch.")}
    edit = (_quickfix_edit if request["method"] in QUICKFIX_RECIPES else _unet_edit)(model, meta)
    meta.update(seconds=round(time.perf_counter() - started, 4), versions=versions(),
                created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    return edit


def stored_or_built(root, request: dict, get_model: Callable[[], Model]) -> tuple[loco.Edit, bool]:
    """The edit of ``request`` from the root if it was made before, else built on ``get_model()`` and saved.

    Returns:
        (edit, built): ``built`` is False when the stored edit was reused.
    """
    name = edit_id(request)
    if edit_dir(root, name).exists():
        return load_edit(root, name), False
    edit = build_edit(get_model(), request)
    save_edit(root, edit)
    return edit, True
