"""LocoEdit: the closed-form edit of cross-attention key/value projections (docs/method.md §4), and applying edits.

Each edited matrix W (original W0) minimizes  sum_i ||W x_i - W0 y_i||^2 + lam ||W - W0||_F^2  over keys x_i (rows
of X, n x d) and values y_i (rows of Y). The minimizer is W* = W0 M with M = (Y^T X + lam I)(X^T X + lam I)^-1.
Because lam I B^-1 = I - X^T X B^-1 (B = X^T X + lam I), M = I + (Y - X)^T G with G = X B^-1 = (X X^T + lam I)^-1 X:
a rank-n update. G is solved once in float64 from the smaller Gram matrix and shared by every matrix that reads the
same keys; applying it costs O(out * d * n) instead of O(out * d^2) for a dense M.

SD families' layers all read the text embedding itself through ``to_k``/``to_v``: one factor serves every layer;
so do PixArt's, which all read the transformer's projected caption. DeepFloyd IF's layers read it through
``add_k_proj``/``add_v_proj`` after the UNet's projection and their own text GroupNorm, so each layer has its own keys,
values and factor. A joint-attention transformer's blocks (FLUX.1's double-stream blocks) read a text stream that
changes from block to block and step to step: each edited block's keys are its own text inputs at every denoising step
of a generation of each source prompt (``stream.text_inputs``), each mapped to the target's at the same step.
"""

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from locolab.compute.edit.neuron import clamp_units
from locolab.compute.generation import make_encoder
from locolab.compute.models.architectures import SINGLE
from locolab.compute.models.loading import Model
from locolab.compute.settings import Settings
from locolab.compute.tokens import (
    aligned_positions,
    last_token_position,
    sequence_parts,
    shares_text,
    subject_position,
    text_rows,
)
from locolab.contract.errors import UserError
from locolab.contract.specs import DEFAULT_LAMBDA

COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2")  # the pipeline parts an edit may change
KEY_SEED = 0  # the seed of the generations a joint-attention block's keys are read from


@dataclass(frozen=True)
class Factor:
    """The shared right-hand factor M = I + delta^T gain (float64, CPU).

    Attributes:
        delta: Y - X, (n, d).
        gain: G = X (X^T X + lam I)^-1, (n, d).
    """

    delta: torch.Tensor
    gain: torch.Tensor

    def apply(self, weight: torch.Tensor) -> torch.Tensor:
        """W0 M for an (out, d) weight (M itself is never formed), computed in float64 and returned in the weight's
        dtype and device."""
        w0 = weight.detach().to("cpu", torch.float64)
        return torch.addmm(w0, w0 @ self.delta.T, self.gain).to(weight.device, weight.dtype)


def solve_factor(keys: torch.Tensor, values: torch.Tensor, lam: float = DEFAULT_LAMBDA) -> Factor:
    """The factor M of the closed-form edit for keys X and values Y.

    Args:
        keys: X, (n, d): what the edited matrices will read.
        values: Y, (n, d): W* x_i should approach W0 y_i.
        lam: the ridge weight, > 0.

    Returns:
        The ``Factor`` shared by every matrix edited with these keys and values.
    """
    if not lam > 0:
        raise UserError(f"lambda must be > 0, got {lam}")
    if keys.ndim != 2 or keys.shape != values.shape:
        raise ValueError(f"keys {tuple(keys.shape)} and values {tuple(values.shape)} must both be (n, d)")
    x = keys.detach().to("cpu", torch.float64)
    y = values.detach().to("cpu", torch.float64)
    n, d = x.shape
    if n <= d:
        gain = torch.linalg.solve(x @ x.T + lam * torch.eye(n, dtype=torch.float64), x)
    else:
        gain = torch.linalg.solve(x.T @ x + lam * torch.eye(d, dtype=torch.float64), x.T).T
    return Factor(y - x, gain)


@dataclass(frozen=True)
class KeysValues:
    """LocoEdit's keys and values with where they were read."""

    keys: torch.Tensor
    values: torch.Tensor
    prompts: list[str]
    positions: list[int] | list[list[int]]
    target_position: int | list[int]


def subject_keys_values(model: Model, concept: str, target: str, prompts: Sequence[str], padding: bool = False,
                        preserve: Sequence[str] = (), layer: int = 0, encoder=None, read=None) -> KeysValues:
    """Keys at the last subject token of each source prompt; values = the target at its last token, one per key.
    Where the sequence has two parts holding the prompt (SD3: CLIP's, then T5's; ``tokens.sequence_parts``), keys
    are read in each part, each mapped to the target's last token in the same part; ``positions`` and
    ``target_position`` then list one position per part.

    Args:
        model: the model whose text encoder(s) give the embeddings.
        concept: the subject text, which must occur in every prompt.
        target: the prompt whose last-token embedding every key is mapped to.
        prompts: source prompts (e.g. the concept alone and the family's templates).
        padding: also key every position after the last subject token (end-of-text, padding), each mapped to the
            target's position at the same offset after its last token (``tokens.aligned_positions``). A causal
            text encoder carries the whole prompt into those positions, and cross-attention reads them too.
        preserve: prompts whose embeddings, at every position, are keys mapped to themselves (an extension of the
            paper's objective: the edit must leave them as they are).
        layer: the layer whose text projections read the keys (``tokens.layer_text``; any layer of SD families,
            which all read the text embedding itself).
        encoder: a prompt-embedding cache (``generation.make_encoder``), to encode each prompt once for many layers.
        read: ``read(prompt)`` -> (steps, T, d), the text the layer reads at each step (a joint-attention block's:
            ``stream.text_inputs``); keys at step s map to the target's at step s, and preserved prompts keep their
            positions up to their end-of-text token. Default: the layer's text (``tokens.text_rows``), one step.
    """
    if not prompts:
        raise UserError("no source prompts")
    parts = [sequence_parts(model, lambda t, p=prompt: subject_position(t, p, concept)) for prompt in prompts]
    target_parts = sequence_parts(model, lambda t: last_token_position(t, target))
    if any(position - start < 1 for position, start, _ in target_parts):
        raise UserError("empty target prompt: give a non-empty --target")
    encoder = encoder or make_encoder(model)
    read = read or (lambda prompt: text_rows(model, layer, encoder, prompt)[None])
    goal = read(target)
    width = goal.shape[-1]
    keys, values = [], []
    for prompt, prompt_parts in zip(prompts, parts):
        at, to = [], []
        for (position, start, end), (goal_position, _, _) in zip(prompt_parts, target_parts):
            part_at, part_to = aligned_positions(position - start, goal_position - start,
                                                 (end or goal.shape[1]) - start, padding)
            at += [start + i for i in part_at]
            to += [start + i for i in part_to]
        keys.append(read(prompt)[:, at].reshape(-1, width))
        values.append(goal[:, to].reshape(-1, width))
    kept = []
    for prompt in preserve:
        rows = read(prompt)
        if rows.shape[0] == 1:
            kept.append(rows.reshape(-1, width))
            continue
        ends = sequence_parts(model, lambda t, p=prompt: last_token_position(t, p))
        kept.append(torch.cat([rows[:, start:position + 2] for position, start, _ in ends], 1).reshape(-1, width))

    def shown(found):
        return [position for position, _, _ in found] if len(found) > 1 else found[0][0]

    return KeysValues(torch.cat(keys + kept), torch.cat(values + kept), list(prompts), [shown(p) for p in parts],
                      shown(target_parts))


def check_layers(model: Model, layers: Sequence[int]) -> list[int]:
    """Sorted distinct layer indices, each within the model's range and with text projections of its own."""
    count = len(model.layers)
    bad = [i for i in layers if not 0 <= i < count]
    if bad or not layers:
        raise UserError(f"layers {list(layers)} are invalid for {model.name} with {count} text-reading layers: "
                        f"use indices 0..{count - 1}")
    single = [i for i in layers if model.layers[i].block == SINGLE]
    if single:
        raise UserError(f"layers {single} are single-stream blocks, whose to_k/to_v project the text and the image "
                        "tokens alike: a closed-form edit there would change every image token's keys and values too; "
                        f"edit double-stream blocks (0..{sum(layer.block != SINGLE for layer in model.layers) - 1}) "
                        "instead")
    return sorted(set(layers))


def key_settings(model: Model) -> Settings:
    """The settings of the generations a joint-attention block's keys are read from: the model's defaults."""
    return Settings.defaults(model.spec)


def layer_keys_values(model: Model, layers: Sequence[int], concept: str, target: str, prompts: Sequence[str],
                      padding: bool = False, preserve: Sequence[str] = (), sequential: bool = True,
                      lam: float = DEFAULT_LAMBDA) -> dict[int, KeysValues]:
    """Per edited layer, the keys and values its text projections read (arguments as ``subject_keys_values``).

    Where the layers read the same text (SD families, PixArt) they share one ``KeysValues`` object, so one factor
    serves them all (docs/method.md §4); DeepFloyd IF's layers each normalize the text their own way and get their
    own; a joint-attention transformer's blocks each read their own text stream, recorded during generations of the
    prompts with the model's default settings and seed ``KEY_SEED`` (``stream.text_inputs``). There, ``sequential``
    reads the blocks in order, each through the earlier ones already edited with ridge weight ``lam`` (an earlier
    block's edit moves every later block's text input); otherwise all are read from the unedited model at once.
    """
    layers = check_layers(model, layers)
    encoder = make_encoder(model)
    if model.arch.stream:
        from locolab.compute.stream import text_inputs

        every = list(dict.fromkeys([target, *prompts, *preserve]))

        def stream_read(chosen):
            recorded = text_inputs(model, chosen, every, key_settings(model), KEY_SEED)
            return {layer: subject_keys_values(model, concept, target, prompts, padding, preserve, layer, encoder,
                                               recorded[layer].__getitem__) for layer in chosen}

        if not sequential:
            return stream_read(layers)
        found, originals = {}, {}
        try:
            for layer in layers:
                found.update(stream_read([layer]))
                if layer != layers[-1]:
                    factor = solve_factor(found[layer].keys, found[layer].values, lam)
                    originals.update(_swap_weights(model.pipe, edited_weights(model, {layer: factor})))
        finally:
            _swap_weights(model.pipe, originals)
        return found

    def read(layer):
        return subject_keys_values(model, concept, target, prompts, padding, preserve, layer, encoder)

    if shares_text(model, layers):
        return dict.fromkeys(layers, read(layers[0]))
    return {layer: read(layer) for layer in layers}


def joined(parts: list[dict[int, KeysValues]]) -> dict[int, KeysValues]:
    """Per layer, the keys and values of several concepts stacked (one solve edits them all); layers that share one
    object in every part share the joined one too. Positions are the first concept's."""
    if len(parts) == 1:
        return parts[0]
    made = {}
    for layer in parts[0]:
        kvs = [part[layer] for part in parts]
        key = tuple(id(kv) for kv in kvs)
        if key not in made:
            made[key] = KeysValues(torch.cat([kv.keys for kv in kvs]), torch.cat([kv.values for kv in kvs]),
                                   [p for kv in kvs for p in kv.prompts], kvs[0].positions, kvs[0].target_position)
    return {layer: made[tuple(id(part[layer]) for part in parts)] for layer in parts[0]}


def solve_factors(keys_values: dict[int, KeysValues], lam: float = DEFAULT_LAMBDA) -> dict[int, Factor]:
    """Per layer, the factor of its keys and values, solved once per distinct ``KeysValues``."""
    solved = {}
    for kv in keys_values.values():
        if id(kv) not in solved:
            solved[id(kv)] = solve_factor(kv.keys, kv.values, lam)
    return {layer: solved[id(kv)] for layer, kv in keys_values.items()}


def edited_weights(model: Model, factors: dict[int, Factor]) -> dict[str, torch.Tensor]:
    """New text key/value projection weights (``Architecture.text_projections``) of each layer edited with its
    factor, by qualified parameter name (``unet.<...>.attn2.to_k.weight``, ``transformer.<...>``)."""
    weights = {}
    for index in check_layers(model, list(factors)):
        for projection in model.arch.text_projections:
            linear = getattr(model.attentions[index], projection)
            name = f"{model.arch.denoiser}.{model.layers[index].path}.{projection}.weight"
            weights[name] = factors[index].apply(linear.weight).cpu()
    return weights


def qualified(name: str) -> str:
    """A parameter name qualified by pipeline component. Edits made before text-encoder edits named UNet
    parameters bare; no UNet parameter name starts with a component name, so a bare name is the UNet's."""
    return name if name.split(".", 1)[0] in COMPONENTS else f"unet.{name}"


@dataclass
class Edit:
    """An edit of a model (its UNet or text encoders) and its record.

    Attributes:
        meta: the JSON-able record (id, model, method, layers, lambda, prompts, positions, ...).
        weights: new values of changed parameters by name qualified by pipeline component (``unet.<...>`` for
            LocoEdit, ``text_encoder.<...>`` for DiffQuickFix).
        units: per UNet projection module path, (unit indices, clamp values) held during generation (neuron edit).
    """

    meta: dict
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    units: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def edit_id(self) -> str:
        return self.meta["edit_id"]


def _parameter(pipe, name: str) -> torch.nn.Parameter:
    component, _, path = qualified(name).partition(".")
    try:
        return getattr(pipe, component).get_parameter(path)
    except AttributeError:
        raise UserError(f"the edit changes {name}, which this model does not have: wrong model?") from None


def _swap_weights(pipe, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy ``weights`` into ``pipe``'s parameters; returns the originals (clones)."""
    params = []
    for name, value in weights.items():
        param = _parameter(pipe, name)
        if param.shape != value.shape:
            raise UserError(f"the edit's {name} has shape {tuple(value.shape)}, the model's {tuple(param.shape)}: "
                            "wrong model?")
        params.append((name, param, value))
    originals = {}
    with torch.no_grad():
        for name, param, value in params:
            originals[name] = param.detach().clone()
            param.copy_(value.to(param.device, param.dtype))
    return originals


@contextmanager
def applied(model: Model, edit: Edit, cfg: bool = True):
    """Apply ``edit`` to ``model`` until exit; the original weights come back bit for bit, also on errors.

    Args:
        model: the model to edit in place.
        edit: a weight edit (LocoEdit, DiffQuickFix) or neuron edit (clamped units).
        cfg: whether generation runs classifier-free guidance rows (neuron edits clamp only the conditional rows).
    """
    originals = _swap_weights(model.pipe, edit.weights)
    try:
        with clamp_units(model.denoiser, edit.units, cfg):
            yield model
    finally:
        _swap_weights(model.pipe, originals)
