"""DiffQuickFix (docs/method.md §6): LocoEdit's closed form on the self-attention output projection of text-encoder
layer 0.

Keys x_i are that projection's inputs on the source prompts at the last subject token and, by default, every later
position (end-of-text and padding); values are its inputs on the target at the aligned position: the target's last
token, then the same offset after it, clipped to the sequence. ``solve_factor(keys, values)`` gives the W minimizing
sum_i ||W x_i - W0 x'_i||^2 + lam ||W - W0||_F^2; the bias is kept. SD-XL edits each of its two encoders with keys and
values from that encoder.
"""

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from compute.edit import solve_factor
from compute.hooks import Hooks
from compute.models.loading import Model
from compute.tokens import aligned_positions, last_token_position, subject_position
from contract.errors import UserError

ENCODERS = ("text_encoder", "text_encoder_2")  # pipeline components, each read with its own tokenizer
# Layer 0's self-attention output projection of CLIP and T5 encoders, matched by the end of its module path (the
# prefix varies: transformers 5 dropped CLIPTextModel's ``text_model`` wrapper but not CLIPTextModelWithProjection's).
OUT_PROJ = ("encoder.layers.0.self_attn.out_proj", "encoder.block.0.layer.0.SelfAttention.o")


@dataclass(frozen=True)
class EncoderKeys:
    """One text encoder's keys and values, and where they were read.

    Attributes:
        module: the edited projection, qualified by pipeline component
            (``text_encoder.encoder.layers.0.self_attn.out_proj``).
        keys: (n, d) projection inputs on the source prompts, prompt by prompt, position by position.
        values: (n, d) projection inputs on the target at the aligned positions.
        positions: per source prompt, its key positions (the last subject token first).
        target_positions: per source prompt, the aligned target positions.
    """

    module: str
    keys: torch.Tensor
    values: torch.Tensor
    positions: list[list[int]]
    target_positions: list[list[int]]


def encoder_modules(model: Model) -> dict[str, str]:
    """The projection to edit in each text encoder, by pipeline component
    (e.g. ``{"text_encoder": "encoder.layers.0.self_attn.out_proj"}``)."""
    modules = {}
    for component in ENCODERS:
        encoder = getattr(model.pipe, component, None)
        if encoder is None:
            continue
        found = [name for name, _ in encoder.named_modules() if name.endswith(OUT_PROJ)]
        if len(found) != 1:
            raise UserError(f"diffquickfix supports CLIP and T5 text encoders, not the {type(encoder).__name__} of "
                            f"family {model.arch.name!r}")
        modules[component] = found[0]
    if not modules:
        raise UserError(f"family {model.arch.name!r} has no text encoder for diffquickfix to edit")
    return modules


@contextmanager
def _recorded_inputs(model: Model, modules: dict[str, str]):
    """Record the input of each module on every forward call until exit; yields ``{component: [(1, T, d), ...]}``."""
    seen = {component: [] for component in modules}
    with Hooks() as hooks:
        for component, path in modules.items():
            module = getattr(model.pipe, component).get_submodule(path)
            hooks.after(module, lambda mod, args, out, rows=seen[component]: rows.append(args[0].detach()))
        yield seen


def projection_inputs(model: Model, prompts: Sequence[str]) -> dict[str, list[torch.Tensor]]:
    """Per text encoder, the edited projection's input on each prompt, (T, d) in float64 on the CPU.

    The prompts go through the family's own encoding, so tokenization and masks are the pipeline's.
    """
    modules = encoder_modules(model)
    with torch.no_grad(), _recorded_inputs(model, modules) as seen:
        for prompt in prompts:
            model.arch.encode(model.pipe, prompt)
    for component, rows in seen.items():
        if len(rows) != len(prompts):
            raise UserError(f"{component} ran {len(rows)} times for {len(prompts)} prompts: "
                            f"family {model.arch.name!r} is not supported by diffquickfix")
    return {component: [row[0].to("cpu", torch.float64) for row in rows] for component, rows in seen.items()}


def keys_values(model: Model, concept: str, target: str, prompts: Sequence[str],
                padding: bool = True, preserve: Sequence[str] = ()) -> list[EncoderKeys]:
    """DiffQuickFix keys and values of every text encoder of ``model`` (see the module docstring).

    Args:
        model: the model whose text encoder(s) are edited.
        concept: the subject text, which must occur in every prompt.
        target: the prompt the concept should read as.
        prompts: source prompts.
        padding: also key the positions after the last subject token.
        preserve: prompts whose projection inputs, at every position, are keys mapped to themselves.
    """
    if not prompts:
        raise UserError("no source prompts")
    if not target.strip():
        raise UserError("empty target prompt: give a non-empty --target")
    sources, goal = projection_inputs(model, prompts), projection_inputs(model, [target])
    kept = projection_inputs(model, preserve) if preserve else {}
    result = []
    for component, path in encoder_modules(model).items():
        tokenizer = getattr(model.pipe, component.replace("text_encoder", "tokenizer"))
        target_last = last_token_position(tokenizer, target)
        keys, values, positions, targets = [], [], [], []
        for prompt, rows in zip(prompts, sources[component]):
            at, to = aligned_positions(subject_position(tokenizer, prompt, concept), target_last, len(rows), padding)
            keys.append(rows[at])
            values.append(goal[component][0][to])
            positions.append(at)
            targets.append(to)
        keys += kept.get(component, [])
        values += kept.get(component, [])
        result.append(EncoderKeys(f"{component}.{path}", torch.cat(keys), torch.cat(values), positions, targets))
    return result


def edited_weights(model: Model, encoder_keys: Sequence[EncoderKeys], lam: float) -> dict[str, torch.Tensor]:
    """New projection weights by component-qualified parameter name (``text_encoder....out_proj.weight``)."""
    weights = {}
    for kv in encoder_keys:
        component, path = kv.module.split(".", 1)
        linear = getattr(model.pipe, component).get_submodule(path)
        weights[f"{kv.module}.weight"] = solve_factor(kv.keys, kv.values, lam).apply(linear.weight).cpu()
    return weights
