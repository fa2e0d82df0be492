"""Portable edits: an edit exported as a LoRA any diffusers pipeline loads, as a full ``save_pretrained`` folder of the
edited pipeline, or in its own safetensors format, each with an edit card (``README.md`` and ``edit_card.json``).

A LoRA holds ΔW = W* − W0 of each edited projection, factored by SVD as B A (B = U √S, A = √S Vᵀ) under
PEFT/diffusers key names (``unet.<module>.lora_A.weight``). Singular values below the rounding level of W* in the
edit's dtype (ε · max(out, in) · ‖W*‖₂) are dropped, so the factorization is exact to that level; ``rank`` truncates
further. The largest error |W0 + B A − W*| of the stored factors is stated either way. Every matrix is zero-padded to
the largest rank, so one LoRA rank (and scale lora_alpha / r = 1) serves every module whatever diffusers infers.

Usage::

    folder = export_edit(model, edit, "out/van-gogh-lora", "lora", root="artifacts")
    pipe.load_lora_weights("out/van-gogh-lora")
"""

import importlib.metadata
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from locolab.compute.atomic import atomic_dir
from locolab.compute.edit.closed_form import Edit, applied
from locolab.compute.edit.store import edit_dir
from locolab.compute.models.loading import Model
from locolab.compute.provenance import git_commit
from locolab.contract.errors import UserError
from locolab.contract.names import EDIT_EVALS, EDIT_RECORD, EDIT_SUMMARY, EDIT_UNITS, EDIT_WEIGHTS

FORMATS = ("lora", "diffusers", "safetensors")
LORA_FILE = "pytorch_lora_weights.safetensors"  # the name ``load_lora_weights(DIR)`` looks for
CARD_JSON = "edit_card.json"
CARD_README = "README.md"
LORA_COMPONENTS = ("unet", "transformer")  # denoisers whose pipelines load a LoRA by these key prefixes


def lora_factors(model: Model, edit: Edit, rank: int | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The LoRA of a weight edit on ``model``: (PEFT/diffusers state dict, report of ranks and errors).

    Args:
        model: the unedited model (W0).
        edit: a weight edit of its UNet or transformer.
        rank: keep at most this many singular values per matrix (None: all above the rounding level).
    """
    factors, ranks, errors = {}, {}, {}
    for name, new in edit.weights.items():
        component, _, path = name.partition(".")
        if component not in LORA_COMPONENTS or not path.endswith(".weight"):
            raise UserError(f"the edit changes {name}, which a LoRA of the {'/'.join(LORA_COMPONENTS)} does not hold: "
                            "export it with --format diffusers or --format safetensors")
        w0 = getattr(model.pipe, component).get_parameter(path).detach().to("cpu", torch.float64)
        target = new.to(torch.float64)
        u, s, vh = torch.linalg.svd(target - w0, full_matrices=False)
        tolerance = torch.finfo(new.dtype).eps * max(w0.shape) * float(torch.linalg.matrix_norm(target, ord=2))
        kept = int((s > tolerance).sum())
        kept = max(1, min(kept, rank) if rank is not None else kept)
        root = s[:kept].sqrt()
        up, down = (u[:, :kept] * root).to(new.dtype), (root[:, None] * vh[:kept]).to(new.dtype)
        factors[name.removesuffix(".weight")] = (up, down)
        ranks[name] = kept
        errors[name] = float((w0 + up.double() @ down.double() - target).abs().max())
    width = max(ranks.values())
    state = {}
    for module, (up, down) in factors.items():
        pad = width - up.shape[1]
        state[f"{module}.lora_A.weight"] = torch.nn.functional.pad(down, (0, 0, 0, pad)).contiguous()
        state[f"{module}.lora_B.weight"] = torch.nn.functional.pad(up, (0, pad)).contiguous()
    report = {"rank": width, "ranks": ranks, "truncated_to": rank, "max_error": max(errors.values()),
              "errors": errors}
    return state, report


def evaluations(root, edit_id: str) -> list[dict]:
    """The stored evaluation summaries of an edit (``eval.json`` of each evaluation, oldest layout included)."""
    folder = Path(edit_dir(root, edit_id))
    paths = sorted(folder.glob(f"{EDIT_EVALS}/*/{EDIT_SUMMARY}")) + sorted(folder.glob(EDIT_SUMMARY))
    found = []
    for path in paths:
        summary = json.loads(path.read_text(encoding="utf-8"))
        found.append({"eval_id": path.parent.name if path.parent != folder else None, "summary": summary})
    return found


def locolab_version() -> str:
    try:
        return importlib.metadata.version("locolab")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def edit_card(edit: Edit, fmt: str, evals: list[dict], lora: dict | None = None) -> dict:
    """What an export says about its edit: model, method, concepts, layers, settings, evaluations, provenance."""
    meta = edit.meta
    card = {"edit_id": meta["edit_id"], "format": fmt, "model": meta.get("model"), "method": meta.get("method"),
            "concepts": meta.get("concepts", [meta.get("concept")]), "target": meta.get("target"),
            "layers": meta.get("layers"), "modules": sorted(edit.weights) or sorted(edit.units),
            "settings": {key: value for key, value in meta.items() if key not in ("seconds", "created_at")},
            "evaluations": evals, "locolab_version": locolab_version(), "git_commit": git_commit()}
    if edit.units:
        card["note"] = ("a neuron edit: it holds units of the key/value projections at fixed values during "
                        "generation instead of changing weights; load it with locolab.compute.load_edit and apply it "
                        "with locolab.compute.applied")
    if lora is not None:
        card["lora"] = lora
    return card


def _readme(card: dict) -> str:
    lines = [f"# Edit {card['edit_id']} ({card['format']})", "",
             f"- model: {card['model']}", f"- method: {card['method']}",
             f"- concepts: {', '.join(map(str, card['concepts']))} -> {card['target']}",
             f"- layers: {card['layers']}", f"- LocoLab {card['locolab_version']}, commit {card['git_commit']}"]
    if "lora" in card:
        lora = card["lora"]
        lines.append(f"- LoRA rank {lora['rank']} (truncated to: {lora['truncated_to']}), largest weight error "
                     f"{lora['max_error']:.3g}; load with `pipe.load_lora_weights(DIR)`")
    if card["format"] == "diffusers":
        lines.append("- load with `DiffusionPipeline.from_pretrained(DIR)`")
    if "note" in card:
        lines.append(f"- note: {card['note']}")
    for evaluation in card["evaluations"]:
        summary = evaluation["summary"]
        shown = ", ".join(f"{key} {summary[key]:.3g}" for key in ("efficacy_score_drop", "generalization_score_drop",
                                                                  "specificity", "other_concepts_retained")
                          if isinstance(summary.get(key), int | float))
        lines.append(f"- evaluation {evaluation['eval_id']}: {shown or 'see edit_card.json'}")
    lines += ["", f"Everything else (settings, every evaluation with its intervals) is in `{CARD_JSON}`.", ""]
    return "\n".join(lines)


def export_edit(model: Model | None, edit: Edit, out: str | os.PathLike, fmt: str = "lora", *, root=None,
                rank: int | None = None) -> tuple[Path, dict]:
    """Write ``edit`` to the new folder ``out`` in format ``fmt`` with its edit card, atomically.

    Args:
        model: the unedited model the edit was made on (needed for ``lora`` and ``diffusers``).
        edit: the edit.
        out: a folder that does not exist or is empty.
        fmt: ``lora`` (weight edits of the denoiser), ``diffusers`` (the edited pipeline) or ``safetensors`` (the
            edit's own files).
        root: the artifact root the edit is stored in (its evaluations go into the card).
        rank: ``lora`` only: keep at most this many singular values per matrix.

    Returns:
        (the folder, the card).
    """
    if fmt not in FORMATS:
        raise UserError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not empty: give a new folder")
    if rank is not None and fmt != "lora":
        raise UserError("--rank is for --format lora only")
    if edit.units and fmt != "safetensors":
        raise UserError(f"edit {edit.edit_id} is a neuron edit: it clamps activations during generation rather than "
                        "changing weights, so no LoRA or pipeline folder holds it; use --format safetensors (the "
                        "edit's own format, applied by locolab.compute.applied)")
    evals = evaluations(root, edit.edit_id) if root is not None and Path(edit_dir(root, edit.edit_id)).is_dir() else []
    lora = None
    with atomic_dir(out) as tmp:
        if fmt == "lora":
            state, lora = lora_factors(model, edit, rank)
            save_file(state, str(tmp / LORA_FILE))
        elif fmt == "diffusers":
            with applied(model, edit):
                model.pipe.save_pretrained(tmp, safe_serialization=True)
        else:
            if edit.weights:
                save_file({n: v.contiguous() for n, v in edit.weights.items()}, str(tmp / EDIT_WEIGHTS))
            if edit.units:
                save_file({f"{m}.{kind}": t.contiguous() for m, pair in edit.units.items()
                           for kind, t in zip(("indices", "values"), pair)}, str(tmp / EDIT_UNITS))
            (tmp / EDIT_RECORD).write_text(json.dumps(edit.meta, indent=2))
        card = edit_card(edit, fmt, evals, lora)
        (tmp / CARD_JSON).write_text(json.dumps(card, indent=2, default=str))
        (tmp / CARD_README).write_text(_readme(card))
    return out, card
