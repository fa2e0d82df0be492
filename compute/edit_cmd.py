"""``python -m compute edit``: make a LocoEdit (closed form on chosen layers), all-layers, neuron or DiffQuickFix
(closed form on text-encoder layer 0) edit, save it under ``<artifacts>/edits/<edit_id>/`` and optionally evaluate
it."""

import datetime
import hashlib
import json
import os
import re
import time

import torch

from . import edit as loco
from . import quickfix
from .edit_methods import CHOSEN_LAYERS, CLOSED_FORM, METHODS, POSITIONS, default_positions
from .edit_store import edit_dir, load_edit, save_edit
from .errors import UserError
from .eval_cmd import add_eval_options, run_eval
from .generate_cmd import parse_ints
from .loading import layer_count, load_model
from .neuron import DEFAULT_POSITION, rank_units
from .prompts import DEFAULT_PROMPT_SET, FAMILY_NAMES, PROMPT_SETS, attribute_family
from .provenance import versions
from .registry import MODELS
from .store import Store, minimal_windows, resolve_root
from .sweep_config import load_config

DEFAULT_TOPK = 50


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("edit", help="edit a concept out of a model (LocoEdit, all layers, neurons or "
                                                "DiffQuickFix)")
    parser.add_argument("--model", required=True, help="registry name, pipeline directory or hub id")
    parser.add_argument("--family", required=True, choices=FAMILY_NAMES, help="attribute family (prompt set)")
    parser.add_argument("--concept", required=True, help='the concept to edit, e.g. "van gogh"')
    parser.add_argument("--target", help="what the concept should become (default: the family's target)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--layers", help="comma-separated layer indices, e.g. 8,9")
    where.add_argument("--from-run", metavar="RUN_ID",
                       help="use the minimal localizing window of a stored sweep (a run id, or its YAML config)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="with --from-run: fraction of the original-to-target gap a window must remove")
    parser.add_argument("--method", choices=METHODS, default="loco")
    parser.add_argument("--lambda", dest="lam", type=float, default=loco.DEFAULT_LAMBDA,
                        help="ridge weight of the closed form (> 0)")
    parser.add_argument("--prompt", action="append", dest="prompts",
                        help="source prompt containing the concept; repeatable (default: the family's templates)")
    parser.add_argument("--topk", type=int, default=DEFAULT_TOPK, help="neuron: units to hold")
    parser.add_argument("--position", type=int, default=DEFAULT_POSITION, help="neuron: token position ranked")
    parser.add_argument("--positions", choices=POSITIONS,
                        help="closed-form methods: key positions, the last subject token alone or with every later "
                             "(end-of-text, padding) position (default: subject for loco/all-layers as in the paper, "
                             f"{default_positions('diffquickfix')} for diffquickfix)")
    parser.add_argument("--preserve-others", action="store_true",
                        help="closed-form methods: also key the family's other concepts' source prompts, at every "
                             "position, mapped to themselves, so the edit leaves them alone (not in the paper)")
    parser.add_argument("--prompt-set", choices=PROMPT_SETS,
                        help="prompt set of --family (default: the registered model's, else paper)")
    parser.add_argument("--artifacts", help="artifact root (default $LOCOLAB_ARTIFACTS or artifacts/)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--eval", action="store_true", help="evaluate the edit afterwards (see eval-edit)")
    add_eval_options(parser)
    parser.set_defaults(func=run)


def window_from_run(root, run_id: str, model: str, family: str, concept: str, threshold: float) -> list[int]:
    """The layers of the minimal localizing window of ``concept`` in sweep run ``run_id`` (with several scorers,
    the first scorer id in sort order decides)."""
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
    windows = [w for w in minimal_windows(con, threshold, [run_id]).to_pylist()
               if (w["model"], w["family"], w["concept"]) == (model, family, concept)]
    if not windows:
        raise UserError(f"no window of run {run_id!r} localizes {concept!r} at threshold {threshold}: "
                        "lower --threshold or pass --layers")
    start, size = windows[0]["window_start"], windows[0]["window_size"]
    return list(range(start, start + size))


def _edit_id(request: dict) -> str:
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", request["concept"].lower()).strip("-")[:40] or "concept"
    return f"{slug}-{request['method']}-{digest}"


def _check_args(args) -> None:
    if not args.concept.strip():
        raise UserError("empty --concept")
    if args.method != "neuron" and not args.lam > 0:
        raise UserError(f"--lambda must be > 0, got {args.lam}")
    if args.method == "neuron" and args.topk < 0:
        raise UserError(f"--topk must be >= 0, got {args.topk}")
    if args.method == "all-layers" and (args.layers or args.from_run):
        raise UserError("--method all-layers edits every layer: drop --layers/--from-run")
    if args.method == "diffquickfix" and (args.layers or args.from_run):
        raise UserError("--method diffquickfix edits text-encoder layer 0, not UNet layers: drop --layers/--from-run")
    if args.method not in CLOSED_FORM and (args.positions or args.preserve_others):
        raise UserError(f"--positions/--preserve-others are for the closed-form methods, not --method {args.method}")
    if args.method in CHOSEN_LAYERS and not (args.layers or args.from_run):
        raise UserError(f"--method {args.method} needs --layers (e.g. 8,9) or --from-run RUN_ID")


def prompt_set_of(args) -> str:
    """``--prompt-set``, else the registered model's prompt set, else the paper's."""
    spec = MODELS.get(args.model)
    return args.prompt_set or (spec.prompt_set if spec else DEFAULT_PROMPT_SET)


def request_of(args, family) -> dict:
    """What determines the edit (its id is a digest of this), from the arguments; no model is loaded."""
    target = args.target if args.target is not None else family.target_for(args.concept)
    request = {"model": args.model, "family": family.name, "prompt_set": prompt_set_of(args), "concept": args.concept,
               "target": target, "method": args.method,
               "source_prompts": args.prompts or family.source_prompts(args.concept)}
    if args.method in CLOSED_FORM:
        request["positions"] = args.positions or default_positions(args.method)
        request["preserve_prompts"] = ([p for c in family.concepts if c != args.concept
                                        for p in family.source_prompts(c)] if args.preserve_others else [])
    if args.method == "diffquickfix":
        request["lambda"] = args.lam
        return request
    if args.from_run:
        request["from_run"] = args.from_run
        request["threshold"] = args.threshold
        request["layers"] = window_from_run(args.artifacts, args.from_run, args.model, family.name, args.concept,
                                            args.threshold)
    elif args.layers:
        request["layers"] = sorted(set(parse_ints(args.layers, "layers")))
    else:
        request["layers"] = list(range(layer_count(args.model)))
    if args.method == "neuron":
        concept_prompts, neutral_prompts = family.contrast_prompts(args.concept)
        request.update(topk=args.topk, position=args.position, concept_prompts=concept_prompts,
                       neutral_prompts=neutral_prompts)
    else:
        request["lambda"] = args.lam
    return request


def _unet_edit(model, meta: dict) -> loco.Edit:
    layers = loco.check_layers(model, meta["layers"])
    meta.update(layer_paths=[model.layers[i].path for i in layers], num_layers=len(model.layers))
    if meta["method"] == "neuron":
        units, _ = rank_units(model, layers, meta["concept_prompts"], meta["neutral_prompts"], meta["position"],
                              meta["topk"])
        meta["units"] = {name: indices.tolist() for name, (indices, _) in units.items()}
        return loco.Edit(meta, units=units)
    by_layer = loco.layer_keys_values(model, layers, meta["concept"], meta["target"], meta["source_prompts"],
                                      padding=meta.get("positions") == POSITIONS[1],
                                      preserve=meta.get("preserve_prompts", ()))
    kv = by_layer[layers[0]]  # positions and counts are the same for every layer
    distinct = {id(k): k for k in by_layer.values()}.values()
    meta.update(token_positions=kv.positions, target_position=kv.target_position, num_keys=len(kv.keys),
                keys_rank=min(int(torch.linalg.matrix_rank(k.keys)) for k in distinct))
    if model.family.edit_note:
        meta["note"] = model.family.edit_note
    return loco.Edit(meta, weights=loco.edited_weights(model, loco.solve_factors(by_layer, meta["lambda"])))


def _quickfix_edit(model, meta: dict) -> loco.Edit:
    encoders = quickfix.keys_values(model, meta["concept"], meta["target"], meta["source_prompts"],
                                    padding=meta["positions"] == POSITIONS[1],
                                    preserve=meta.get("preserve_prompts", ()))
    by_encoder = {kv.module.split(".", 1)[0]: kv for kv in encoders}
    meta.update(modules=[kv.module for kv in encoders],
                token_positions={name: [p[0] for p in kv.positions] for name, kv in by_encoder.items()},
                num_keys={name: len(kv.keys) for name, kv in by_encoder.items()},
                keys_rank={name: int(torch.linalg.matrix_rank(kv.keys)) for name, kv in by_encoder.items()})
    return loco.Edit(meta, weights=quickfix.edited_weights(model, encoders, meta["lambda"]))


def build_edit(model, request: dict) -> loco.Edit:
    """Compute the edit described by ``request`` (``request_of``) on ``model``."""
    started = time.perf_counter()
    meta = {"edit_id": _edit_id(request), **request, "model_family": model.family.name,
            "dtype": str(model.dtype).removeprefix("torch.")}
    edit = (_quickfix_edit if request["method"] == "diffquickfix" else _unet_edit)(model, meta)
    meta.update(seconds=round(time.perf_counter() - started, 4), versions=versions(),
                created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return edit


def _edited(meta: dict) -> str:
    if "modules" in meta:
        return ", ".join(meta["modules"])
    layers = meta["layers"]
    shown = f"{layers[0]}-{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) else layers
    return f"layers {shown}"


def run(args) -> None:
    _check_args(args)
    family = attribute_family(args.family, prompt_set_of(args))
    request = request_of(args, family)
    edit_id = _edit_id(request)
    root = resolve_root(args.artifacts)
    model = None
    if edit_dir(root, edit_id).exists():
        edit = load_edit(root, edit_id)
        print(f"edit {edit_id} already exists in {edit_dir(root, edit_id)} (not recomputed)")
    else:
        model = load_model(args.model, device=args.device, dtype=args.dtype)
        edit = build_edit(model, request)
        path = save_edit(root, edit)
        print(f"wrote edit {edit_id} to {path} ({edit.meta['seconds'] * 1000:.0f} ms, {_edited(edit.meta)})")
    if "note" in edit.meta:
        print(f"note: {edit.meta['note']}")
    if args.eval:
        run_eval(model or load_model(args.model, device=args.device, dtype=args.dtype), edit, args)
