"""What an edit is asked to do, and doing it: the request record (the edit's id is a digest of it), the layers taken
from a stored sweep, and the edit computed on a loaded model (LocoEdit, all layers, UCE, TIME, ESD-x, neurons or
DiffQuickFix).

Usage::

    request = make_request(EditSpec("tiny-sd1", "style", "van gogh", layers=(8, 9)), "float32")
    edit = build_edit(load_model("tiny-sd1"), request)
"""

import datetime
import hashlib
import json
import os
import re
import time
from collections.abc import Callable

import torch

from locolab.compute.edit import closed_form as loco
from locolab.compute.edit import esd, quickfix, time_edit, uce
from locolab.compute.edit.neuron import rank_units
from locolab.compute.edit.store import edit_exists, load_edit, save_edit
from locolab.compute.models.architectures import ARCHITECTURES, SINGLE
from locolab.compute.models.loading import Model, layer_count, resolve
from locolab.compute.provenance import versions
from locolab.compute.sweep.config import load_config
from locolab.contract.catalog.attributes import attribute_family, preservation_prompts, prompt_set_for
from locolab.contract.errors import UserError
from locolab.contract.names import EDIT_METHODS, KEY_READINGS, SUBJECT_PADDING
from locolab.contract.specs import EditSpec
from locolab.contract.store import Store
from locolab.contract.summaries import concept_summary

SPEC_KEY = "spec"  # an edit request's (and record's) copy of the spec it was resolved from


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
    """``<concept slug>-<method>-<digest of the request>``: the same request always names the same edit (the request
    holds every setting that changes the weights, the dtype included; the spec it was resolved from is kept beside
    it, ``SPEC_KEY``)."""
    resolved = {key: value for key, value in request.items() if key != SPEC_KEY}
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", request["concept"].lower()).strip("-")[:40] or "concept"
    return f"{slug}-{request['method']}-{digest}"


def make_request(spec: EditSpec, dtype: str, root=None, num_layers: int | None = None,
                 stream: bool | None = None) -> dict:
    """What determines an edit (its id is a digest of this), resolved from ``spec``: the prompts of its family, its
    target, its layers (from a stored sweep with ``from_run``), and the dtype the weights are computed in; no model
    is loaded.

    Args:
        spec: the edit (``contract.specs.EditSpec``: every option, its default and its meaning).
        dtype: the weights' dtype (``float32``, ``float16`` or ``bfloat16``: ``spec.dtype`` resolved on the device).
        root: the artifact root ``spec.from_run`` is read from.
        num_layers: the model's layer count (default: read from its config by name); the spec's layers are checked
            against it.
        stream: whether the model's blocks read a joint text stream (FLUX.1, SD3; default: from its architecture, by
            name); only there is ``spec.key_reading`` recorded (sequential unless given).
    """
    method = EDIT_METHODS[spec.method]
    if num_layers is not None:
        spec.check_layers(num_layers)
    prompt_set = prompt_set_for(spec.model, spec.prompt_set)
    attributes = attribute_family(spec.family, prompt_set)
    target = spec.target
    if target is None:  # the published DiffQuickFix recipe pairs the concept with the family target's noun
        target = attributes.target_for(spec.concept)
        target = quickfix.notebook_target(target) if method.published else target
    published = method.published and not spec.prompts  # the published recipe's own prompts
    augmented = published or spec.method == "time"  # TIME's augmentations are the same four phrases
    request = {"model": spec.model, "family": attributes.name, "prompt_set": prompt_set, "concept": spec.concept,
               "target": target, "method": spec.method, "dtype": dtype,
               "source_prompts": list(spec.prompts or (quickfix.augmented(spec.concept) if augmented
                                                       else attributes.source_prompts(spec.concept)))}
    if method.closed_form:
        request["positions"] = spec.key_positions
        request["preserve_prompts"] = ([p for c in attributes.concepts if c != spec.concept
                                        for p in attributes.source_prompts(c)] if spec.preserve_others else [])
    edited = spec.edited
    if len(edited) > 1:  # one key set per concept, each from its family's prompts
        request.update(concepts=edited, prompts_by_concept={c: attributes.source_prompts(c) for c in edited})
        if request["preserve_prompts"]:
            request["preserve_prompts"] = [p for c in attributes.concepts if c not in edited
                                           for p in attributes.source_prompts(c)]
    if spec.method == "uce":  # UCE's preservation: other concepts and the preservation set, one key each
        request.update(erase_scale=spec.erase_scale, preserve_scale=spec.preserve_scale, preserve_prompts=list(
            dict.fromkeys([c for c in attributes.concepts if c not in edited]
                          + [p for p in preservation_prompts(prompt_set, spec.concept)
                             if not any(c.lower() in p.lower() for c in edited)])))
    if method.text_encoder:
        request.update({"lambda": spec.ridge}, target_prompts=quickfix.augmented(target) if published
                       else [target] * len(request["source_prompts"]), bias_in_values=method.published)
    elif spec.from_run:
        request.update(from_run=spec.from_run, threshold=spec.threshold,
                       layers=window_from_run(root, spec.from_run, spec.model, attributes.name, spec.concept,
                                              spec.threshold))
    elif spec.layers:
        request["layers"] = sorted(set(spec.layers))
    else:
        request["layers"] = list(range(num_layers if num_layers is not None else layer_count(spec.model)))
    if method.holds_units:
        concept_prompts, neutral_prompts = attributes.contrast_prompts(spec.concept)
        request.update(topk=spec.topk, selection=spec.selection, position=spec.position,
                       concept_prompts=concept_prompts, neutral_prompts=neutral_prompts)
    elif method.closed_form and not method.text_encoder:
        request["lambda"] = spec.ridge
        stream = ARCHITECTURES[resolve(spec.model).arch].stream if stream is None else stream
        if spec.key_reading and not stream:
            raise UserError("--key-reading is for joint-attention models (FLUX.1, SD3), whose blocks read a text "
                            "stream: drop it")
        if stream:
            request["key_reading"] = spec.key_reading or KEY_READINGS[0]
    if spec.method == "esd-x":
        request.update(iterations=spec.iterations, lr=spec.lr, negative_guidance=spec.negative_guidance, seed=spec.seed,
                       start_guidance=esd.START_GUIDANCE)
    request[SPEC_KEY] = spec.to_dict()
    return request


def _unet_edit(model: Model, meta: dict) -> loco.Edit:
    if not EDIT_METHODS[meta["method"]].chosen_layers:  # FLUX's single-stream blocks have no text projections
        meta["layers"] = [i for i in meta["layers"] if model.layers[i].block != SINGLE]
    layers = loco.check_layers(model, meta["layers"])
    meta.update(layer_paths=[model.layers[i].path for i in layers], num_layers=len(model.layers))
    holds_units = EDIT_METHODS[meta["method"]].holds_units
    if holds_units and model.arch.stream:
        raise UserError(f"--method neuron ranks units on the text a layer reads, which {model.arch.name}'s joint "
                        "attention reads as a stream that changes every step: use --method loco")
    if model.arch.stream:
        meta["keys_read_at"] = {**loco.key_settings(model).to_dict(), "seed": loco.KEY_SEED}
    if holds_units:
        units, _ = rank_units(model, layers, meta["concept_prompts"], meta["neutral_prompts"], meta["position"],
                              meta["topk"], meta["selection"])
        meta["units"] = {name: indices.tolist() for name, (indices, _) in units.items()}
        return loco.Edit(meta, units=units)
    if meta["method"] == "esd-x":
        return loco.Edit(meta, weights=esd.esd_x(model, layers, meta["concept"], meta["iterations"], meta["lr"],
                                                 meta["negative_guidance"], meta["seed"]))
    padding = meta.get("positions") == SUBJECT_PADDING
    concepts = list(meta.get("prompts_by_concept", {meta["concept"]: meta["source_prompts"]}).items())
    if meta["method"] == "uce":
        by_layer = uce.layer_keys_values(model, layers, concepts, meta["target"], meta["preserve_prompts"],
                                         meta["erase_scale"], meta["preserve_scale"], padding)
    elif meta["method"] == "time":
        by_layer = time_edit.layer_keys_values(model, layers, meta["concept"], meta["target"], meta["source_prompts"],
                                               meta["preserve_prompts"])
    else:
        by_layer = loco.joined([loco.layer_keys_values(model, layers, concept, meta["target"], prompts,
                                                       padding=padding, preserve=meta.get("preserve_prompts", ())
                                                       if i == 0 else (),
                                                       sequential=meta.get("key_reading") == KEY_READINGS[0],
                                                       lam=meta["lambda"])
                                for i, (concept, prompts) in enumerate(concepts)])
    kv = by_layer[layers[0]]  # positions and counts are the same for every layer
    distinct = {id(k): k for k in by_layer.values()}.values()
    meta.update(token_positions=kv.positions, target_position=kv.target_position, num_keys=len(kv.keys),
                keys_rank=min(int(torch.linalg.matrix_rank(k.keys)) for k in distinct))
    if model.arch.edit_note:
        meta["note"] = model.arch.edit_note
    return loco.Edit(meta, weights=loco.edited_weights(model, loco.solve_factors(by_layer, meta["lambda"])))


def _quickfix_edit(model: Model, meta: dict) -> loco.Edit:
    encoders = quickfix.keys_values(model, meta["concept"], meta["target_prompts"], meta["source_prompts"],
                                    padding=meta["positions"] == SUBJECT_PADDING,
                                    preserve=meta.get("preserve_prompts", ()))
    by_encoder = {kv.module.split(".", 1)[0]: kv for kv in encoders}
    meta.update(modules=[kv.module for kv in encoders],
                token_positions={name: [p[0] for p in kv.positions] for name, kv in by_encoder.items()},
                num_keys={name: len(kv.keys) for name, kv in by_encoder.items()},
                keys_rank={name: int(torch.linalg.matrix_rank(kv.keys)) for name, kv in by_encoder.items()})
    return loco.Edit(meta, weights=quickfix.edited_weights(model, encoders, meta["lambda"], meta["bias_in_values"]))


def dtype_name(model: Model) -> str:
    """The dtype ``model`` computes in, as an edit request names it."""
    return str(model.dtype).removeprefix("torch.")


def build_edit(model: Model, request: dict) -> loco.Edit:
    """Compute the edit described by ``request`` (``make_request``) on ``model``, which must compute in the request's
    dtype."""
    if request["dtype"] != dtype_name(model):
        raise UserError(f"the edit asks for {request['dtype']} weights but {model.name} is loaded in "
                        f"{dtype_name(model)}: load it with --dtype {request['dtype']}")
    started = time.perf_counter()
    meta = {"edit_id": edit_id(request), **request, "architecture": model.arch.name}
    edit = (_quickfix_edit if EDIT_METHODS[request["method"]].text_encoder else _unet_edit)(model, meta)
    meta.update(seconds=round(time.perf_counter() - started, 4), versions=versions(),
                created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    return edit


def stored_or_built(root, request: dict, get_model: Callable[[], Model]) -> tuple[loco.Edit, bool]:
    """The edit of ``request`` from the root if it was made before, else built on ``get_model()`` and saved.

    Returns:
        (edit, built): ``built`` is False when the stored edit was reused.
    """
    name = edit_id(request)
    if edit_exists(root, name):
        return load_edit(root, name), False
    edit = build_edit(get_model(), request)
    save_edit(root, edit)
    return edit, True
