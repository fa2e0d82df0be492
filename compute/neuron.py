"""Neuron-level editing (method.md §5): rank ``to_k``/``to_v`` output units by Welch's t between prompts with a
concept and matching neutral prompts, then hold the top units of the conditional branch at their neutral mean.

With classifier-free guidance the pipeline runs 2B rows ordered [unconditional, conditional] (as in
``intervention``); only the last B rows are clamped. Without guidance every row is conditional.
"""

from collections.abc import Sequence
from contextlib import contextmanager

import torch

from .errors import UserError
from .loading import Model
from .tokens import embedding_rows

PROJECTIONS = ("to_k", "to_v")
DEFAULT_POSITION = 76  # the official code's padding slot, which sees the whole prompt


def welch_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Welch's t per column of ``a`` (n_a, units) against ``b`` (n_b, units), in float64.

    Columns with zero variance in both groups get t = 0 when the means agree and +-inf when they differ.
    """
    a, b = a.double(), b.double()
    diff = a.mean(0) - b.mean(0)
    scale = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt()
    return torch.where(diff == 0, torch.zeros_like(diff), diff / scale)


def unit_activations(unet, paths: Sequence[str], text: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of projection modules on text embeddings.

    Args:
        unet: the model's UNet.
        paths: attention module paths (``Layer.path``).
        text: (n, D) text-embedding rows (one token position per prompt).

    Returns:
        ``{"<path>.to_k": (n, units), "<path>.to_v": ...}`` in float64 on the CPU.
    """
    out = {}
    with torch.no_grad():
        for path in paths:
            attention = unet.get_submodule(path)
            if attention.norm_cross is not None:
                raise UserError(f"{path} normalizes the text before to_k/to_v: neuron ranking does not support it")
            for projection in PROJECTIONS:
                linear = getattr(attention, projection)
                rows = text.to(linear.weight.device, linear.weight.dtype)
                out[f"{path}.{projection}"] = linear(rows).to("cpu", torch.float64)
    return out


def top_units(concept: dict[str, torch.Tensor], neutral: dict[str, torch.Tensor],
              k: int) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]:
    """The ``k`` units with the largest |Welch t| over all given modules, and their neutral means.

    Args:
        concept: per module, activations on prompts with the concept (``unit_activations``).
        neutral: per module, activations on the matching neutral prompts.
        k: how many units to keep, 0 <= k <= the total number of units.

    Returns:
        (units, t): per module with a chosen unit, (sorted int64 indices, float32 neutral means); and per module
        the t statistic of every unit.
    """
    t = {name: welch_t(concept[name], neutral[name]) for name in concept}
    total = sum(v.numel() for v in t.values())
    if not 0 <= k <= total:
        raise UserError(f"--topk {k} is out of range: the chosen layers have {total} to_k/to_v units")
    names = list(t)
    flat = torch.cat([t[name].abs().nan_to_num(0.0) for name in names])
    chosen = torch.topk(flat, k).indices if k else torch.zeros(0, dtype=torch.int64)
    units, offset = {}, 0
    for name in names:
        width = t[name].numel()
        picked = chosen[(chosen >= offset) & (chosen < offset + width)] - offset
        if picked.numel():
            indices = picked.sort().values
            units[name] = (indices, neutral[name].mean(0)[indices].float())
        offset += width
    return units, t


def rank_units(model: Model, layers: Sequence[int], concept_prompts: Sequence[str], neutral_prompts: Sequence[str],
               position: int = DEFAULT_POSITION, k: int = 50):
    """Choose the top ``k`` ``to_k``/``to_v`` units of ``layers`` that tell concept prompts from neutral ones.

    Args:
        model: the model (its text encoder gives the embeddings).
        layers: layer indices (valid for the model).
        concept_prompts: prompts with the concept (at least 2).
        neutral_prompts: matching prompts without it (at least 2).
        position: token position whose text embedding is projected (0..T-1).
        k: number of units to hold.

    Returns:
        (units, t) as ``top_units``.
    """
    if min(len(concept_prompts), len(neutral_prompts)) < 2:
        raise UserError("the neuron ranking needs at least 2 concept and 2 neutral prompts (for variances)")
    length = model.pipe.tokenizer.model_max_length
    if not 0 <= position < length:
        raise UserError(f"token position {position} is out of range 0..{length - 1}")
    paths = [model.layers[i].path for i in layers]
    unet = model.pipe.unet
    concept = unit_activations(unet, paths, embedding_rows(model, concept_prompts, [position] * len(concept_prompts)))
    neutral = unit_activations(unet, paths, embedding_rows(model, neutral_prompts, [position] * len(neutral_prompts)))
    return top_units(concept, neutral, k)


def _clamp_hook(indices: torch.Tensor, values: torch.Tensor, cfg: bool):
    def hook(module, args, output):
        start = output.shape[0] // 2 if cfg else 0
        output = output.clone()
        output[start:, :, indices.to(output.device)] = values.to(output.device, output.dtype)
        return output

    return hook


@contextmanager
def clamp_units(unet, units: dict[str, tuple[torch.Tensor, torch.Tensor]], cfg: bool = True):
    """Hold chosen projection output units at fixed values, at every token position and call, until exit.

    Args:
        unet: the model's UNet.
        units: per projection module path (``<attention path>.to_k``), (unit indices, values).
        cfg: True when rows are [unconditional, conditional] halves (only the second half is clamped).

    Modules without units get no hook, so an empty edit runs the unmodified model. Hooks are removed on exit,
    also when the body raises.
    """
    handles = []
    try:
        for path, (indices, values) in units.items():
            if indices.numel():
                module = unet.get_submodule(path)
                handles.append(module.register_forward_hook(_clamp_hook(indices, values, cfg)))
        yield
    finally:
        for handle in handles:
            handle.remove()
