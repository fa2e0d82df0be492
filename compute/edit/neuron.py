"""Neuron-level editing (docs/method.md §5): rank the output units of the text key/value projections (``to_k``/``to_v``;
DeepFloyd IF: ``add_k_proj``/``add_v_proj``) by Welch's t between prompts with a concept and matching neutral prompts,
then hold the top units of the conditional branch at their neutral mean.

Selection: ``per-matrix`` (the default, as the official ``neuron_modifications/detect_neurons.py``) takes the top k
units of each projection matrix, so k = 50 on layers 8-9 holds 4 x 50 units; ``pooled`` (ours) takes the top k over
all the matrices together. The official statistic divides by the population std (``np.std``) where Welch's t uses the
sample variance; with as many neutral as concept prompts (every shipped family) the two rank the units identically.

With classifier-free guidance the pipeline runs 2B rows ordered [unconditional, conditional] (as in
``intervention``); only the last B rows are clamped. Without guidance every row is conditional.
"""

from collections.abc import Sequence
from contextlib import contextmanager

import torch

from locolab.compute.generation import make_encoder
from locolab.compute.hooks import Hooks
from locolab.compute.models.loading import Model
from locolab.compute.tokens import layer_text
from locolab.contract.errors import UserError
from locolab.contract.names import NEURON_SELECTIONS, PER_MATRIX, POOLED
from locolab.contract.specs import DEFAULT_POSITION, DEFAULT_TOPK


def welch_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Welch's t per column of ``a`` (n_a, units) against ``b`` (n_b, units), in float64.

    Columns with zero variance in both groups get t = 0 when the means agree and +-inf when they differ.
    """
    a, b = a.double(), b.double()
    diff = a.mean(0) - b.mean(0)
    scale = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt()
    return torch.where(diff == 0, torch.zeros_like(diff), diff / scale)


def unit_activations(model: Model, layers: Sequence[int], prompts: Sequence[str], position: int,
                     encoder) -> dict[str, torch.Tensor]:
    """Outputs of the text key/value projections (``Family.text_projections``) of ``layers`` on each prompt's text
    at ``position``, as each layer reads it (``tokens.layer_text``).

    Args:
        model: the model.
        layers: layer indices.
        prompts: the prompts.
        position: token position (0..T-1).
        encoder: a prompt-embedding cache (``generation.make_encoder``).

    Returns:
        ``{"<path>.to_k": (n, units), "<path>.to_v": ...}`` in float64 on the CPU.
    """
    out = {}
    with torch.no_grad():
        for index in layers:
            rows = torch.cat([layer_text(model, index, encoder(prompt).cond)[:, position] for prompt in prompts])
            for projection in model.arch.text_projections:
                linear = getattr(model.attentions[index], projection)
                out[f"{model.layers[index].path}.{projection}"] = linear(rows).to("cpu", torch.float64)
    return out


def top_units(concept: dict[str, torch.Tensor], neutral: dict[str, torch.Tensor], k: int,
              selection: str = PER_MATRIX) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]],
                                                              dict[str, torch.Tensor]]:
    """The units with the largest |Welch t|, and their neutral means.

    Args:
        concept: per module, activations on prompts with the concept (``unit_activations``).
        neutral: per module, activations on the matching neutral prompts.
        k: how many units to keep: per module (``per-matrix``, 0 <= k <= the narrowest module's units) or over all
            modules together (``pooled``, 0 <= k <= the total number of units).
        selection: ``per-matrix`` (the official code's) or ``pooled``.

    Returns:
        (units, t): per module with a chosen unit, (sorted int64 indices, float32 neutral means); and per module
        the t statistic of every unit.
    """
    if selection not in NEURON_SELECTIONS:
        raise UserError(f"unknown neuron selection {selection!r}: use one of {', '.join(NEURON_SELECTIONS)}")
    t = {name: welch_t(concept[name], neutral[name]) for name in concept}
    size = {name: v.abs().nan_to_num(0.0) for name, v in t.items()}
    if selection == POOLED:
        chosen = _top_pooled(size, k)
    else:
        narrowest = min(v.numel() for v in t.values())
        if not 0 <= k <= narrowest:
            raise UserError(f"--topk {k} is out of range: per matrix, the chosen layers' key/value projections have "
                            f"{narrowest} units (or use --neuron-selection pooled)")
        chosen = {name: torch.topk(v, k).indices for name, v in size.items()} if k else {}
    units = {}
    for name, indices in chosen.items():
        if indices.numel():
            indices = indices.sort().values
            units[name] = (indices, neutral[name].mean(0)[indices].float())
    return units, t


def _top_pooled(size: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Per module, which of the ``k`` largest values over all modules together are its own."""
    total = sum(v.numel() for v in size.values())
    if not 0 <= k <= total:
        raise UserError(f"--topk {k} is out of range: the chosen layers have {total} key/value units")
    chosen = torch.topk(torch.cat(list(size.values())), k).indices if k else torch.zeros(0, dtype=torch.int64)
    picked, offset = {}, 0
    for name, values in size.items():
        picked[name] = chosen[(chosen >= offset) & (chosen < offset + values.numel())] - offset
        offset += values.numel()
    return picked


def rank_units(model: Model, layers: Sequence[int], concept_prompts: Sequence[str], neutral_prompts: Sequence[str],
               position: int = DEFAULT_POSITION, k: int = DEFAULT_TOPK, selection: str = PER_MATRIX):
    """Choose the top ``k`` key/value projection units of ``layers`` (per matrix, or pooled: ``top_units``) that tell
    concept prompts from neutral ones.

    Args:
        model: the model (its text encoder gives the embeddings).
        layers: layer indices (valid for the model).
        concept_prompts: prompts with the concept (at least 2).
        neutral_prompts: matching prompts without it (at least 2).
        position: token position whose text embedding is projected (0..T-1).
        k: number of units to hold, per matrix or in all (``selection``).
        selection: ``per-matrix`` or ``pooled``.

    Returns:
        (units, t) as ``top_units``.
    """
    if min(len(concept_prompts), len(neutral_prompts)) < 2:
        raise UserError("the neuron ranking needs at least 2 concept and 2 neutral prompts (for variances)")
    encoder = make_encoder(model)
    length = encoder(concept_prompts[0]).cond.shape[1]
    if not 0 <= position < length:
        raise UserError(f"token position {position} is out of range 0..{length - 1}")
    concept = unit_activations(model, layers, concept_prompts, position, encoder)
    neutral = unit_activations(model, layers, neutral_prompts, position, encoder)
    return top_units(concept, neutral, k, selection)


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
        units: per projection module path (``<attention path>.to_k``, IF: ``.add_k_proj``), (unit indices, values).
        cfg: True when rows are [unconditional, conditional] halves (only the second half is clamped).

    Modules without units get no hook, so an empty edit runs the unmodified model. Hooks are removed on exit,
    also when the body raises.
    """
    with Hooks() as hooks:
        for path, (indices, values) in units.items():
            if indices.numel():
                hooks.after(unet.get_submodule(path), _clamp_hook(indices, values, cfg))
        yield
