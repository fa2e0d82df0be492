"""DiffQuickFix (docs/method.md §6): LocoEdit's closed form on the self-attention output projection of text-encoder
layer 0, in two recipes (``contract.names.QUICKFIX_RECIPES``).

``diffquickfix``, the published recipe (the predecessor's notebook, adobe-research/DiffQuickFixRelease
``causal_trace_model_edit.ipynb``): source prompts are the concept and three augmentations ("a photo of {}",
"an image of {}", "a picture of {}"), each paired with the same augmentation of the target ("a photo of van gogh" ->
"a photo of a painting"). Keys x_i are the projection's inputs on a source prompt at its last token and every later
position (end-of-text and padding); values v_i are the projection's *outputs*, bias included, on the paired target
at the aligned position (its last token, then the same offset, clipped to the sequence). The new weight minimizes
sum_i ||W x_i - v_i||^2 + lam ||W - W0||_F^2, i.e. W = (lam W0 + sum v x^T)(lam I + sum x x^T)^-1, and the bias is
kept, so an edited output approaches the target's output plus the bias once more.

``diffquickfix-family`` (ours): the family's edit templates, every one mapped to the one target prompt; values are
the projection's inputs x'_i on the target, so W minimizes sum_i ||W x_i - W0 x'_i||^2 + lam ||W - W0||_F^2 and an
edited output approaches the target's output exactly (bias counted once).

SD-XL edits each of its two encoders with keys and values from that encoder.
"""

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from locolab.compute.edit.closed_form import solve_factor
from locolab.compute.hooks import Hooks
from locolab.compute.models.loading import Model
from locolab.compute.tokens import aligned_positions, last_token_position, subject_position
from locolab.contract.errors import UserError

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


# The published recipe's augmentations (the notebook's "A photo of " + base, ...), applied to concept and target alike.
AUGMENTATIONS = ("{}", "a photo of {}", "an image of {}", "a picture of {}")


def notebook_target(family_target: str) -> str:
    """The published recipe's default target: the family's target without its article, as the notebook pairs
    "van gogh" with "painting" (not "a painting"); a target without an article is kept."""
    first, _, rest = family_target.partition(" ")
    return rest if first.lower() in ("a", "an", "the") and rest else family_target


def augmented(text: str) -> list[str]:
    """The published recipe's prompts for ``text``: itself and its three augmentations."""
    return [template.format(text) for template in AUGMENTATIONS]


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


def keys_values(model: Model, concept: str, targets: Sequence[str], prompts: Sequence[str],
                padding: bool = True, preserve: Sequence[str] = ()) -> list[EncoderKeys]:
    """DiffQuickFix keys and values (as projection inputs) of every text encoder of ``model`` (see the module
    docstring).

    Args:
        model: the model whose text encoder(s) are edited.
        concept: the subject text, which must occur in every prompt.
        targets: per source prompt, the prompt it should read as.
        prompts: source prompts.
        padding: also key the positions after the last subject token.
        preserve: prompts whose projection inputs, at every position, are keys mapped to themselves.
    """
    if not prompts:
        raise UserError("no source prompts")
    if len(targets) != len(prompts):
        raise ValueError(f"{len(targets)} target prompts for {len(prompts)} source prompts")
    if not all(target.strip() for target in targets):
        raise UserError("empty target prompt: give a non-empty --target")
    distinct = list(dict.fromkeys(targets))
    sources, goals = projection_inputs(model, prompts), projection_inputs(model, distinct)
    kept = projection_inputs(model, preserve) if preserve else {}
    result = []
    for component, path in encoder_modules(model).items():
        tokenizer = getattr(model.pipe, component.replace("text_encoder", "tokenizer"))
        goal = dict(zip(distinct, goals[component]))
        keys, values, positions, target_positions = [], [], [], []
        for prompt, target, rows in zip(prompts, targets, sources[component]):
            at, to = aligned_positions(subject_position(tokenizer, prompt, concept),
                                       last_token_position(tokenizer, target), len(rows), padding)
            keys.append(rows[at])
            values.append(goal[target][to])
            positions.append(at)
            target_positions.append(to)
        keys += kept.get(component, [])
        values += kept.get(component, [])
        result.append(EncoderKeys(f"{component}.{path}", torch.cat(keys), torch.cat(values), positions,
                                  target_positions))
    return result


def solved_weight(linear: torch.nn.Linear, kv: EncoderKeys, lam: float, bias_in_values: bool) -> torch.Tensor:
    """The edited weight of ``linear`` for keys X and values given as projection inputs Y (float64 solve).

    Without ``bias_in_values``: W = W0 M (``edit.solve_factor``), so W x_i approaches W0 y_i. With it (the published
    recipe), the values are the projection's outputs V = Y W0^T + b: W = (lam W0 + V^T X)(lam I + X^T X)^-1, which is
    W0 M plus the rank-one term b (sum_i g_i)^T with G = X (X^T X + lam I)^-1 the factor's gain.
    """
    factor = solve_factor(kv.keys, kv.values, lam)
    w0 = linear.weight.detach().to("cpu", torch.float64)
    weight = torch.addmm(w0, w0 @ factor.delta.T, factor.gain)
    if bias_in_values and linear.bias is not None:
        weight += torch.outer(linear.bias.detach().to("cpu", torch.float64), factor.gain.sum(0))
    return weight.to(linear.weight.dtype)


def edited_weights(model: Model, encoder_keys: Sequence[EncoderKeys], lam: float,
                   bias_in_values: bool = False) -> dict[str, torch.Tensor]:
    """New projection weights by component-qualified parameter name (``text_encoder....out_proj.weight``), solved
    with ``solved_weight``."""
    weights = {}
    for kv in encoder_keys:
        component, path = kv.module.split(".", 1)
        linear = getattr(model.pipe, component).get_submodule(path)
        weights[f"{kv.module}.weight"] = solved_weight(linear, kv, lam, bias_in_values)
    return weights
