"""TIME, Text-to-Image Model Editing (Orgad, Kawar and Belinkov, ICCV 2023; diffusers'
``StableDiffusionModelEditingPipeline.edit_model``), docs/method.md §4.5.

Each edited key/value matrix W (original W0) minimizes Σ ||W c_i − W0 c*_i||² + λ ||W − W0||²_F over every token
position c_i of each source prompt, c*_i the destination prompt's embedding at the aligned position: W* = (λ W0 +
Σ W0 c*_i c_iᵀ)(λ I + Σ c_i c_iᵀ)⁻¹, λ = 0.1, on every cross-attention ``to_k`` and ``to_v``. That is LocoEdit's
closed form with other keys, solved by ``closed_form.solve_factor``.

Alignment (TIME's: each source token to the next equal destination token, then the rest in order), for a concept
that the destination replaces rather than extends: positions before the concept keep their position (the prompts
share that prefix), the concept's tokens map to the destination's last token, and later positions (end-of-text,
padding) to the same offsets after it. Where the destination extends the source ("a pack of roses" -> "a pack of blue
roses") this is TIME's alignment exactly.
"""

from collections.abc import Sequence

import torch

from locolab.compute.edit.closed_form import KeysValues, check_layers
from locolab.compute.generation import make_encoder
from locolab.compute.models.loading import Model
from locolab.compute.tokens import (
    last_token_position,
    position_in_model,
    shares_text,
    subject_position,
    text_rows,
)
from locolab.contract.errors import UserError


def destination(prompt: str, concept: str, target: str) -> str:
    """The destination of a source prompt: its last occurrence of the concept replaced by the target."""
    at = prompt.lower().rfind(concept.lower())
    if at < 0:
        raise UserError(f"concept {concept!r} does not occur in the source prompt {prompt!r}")
    return prompt[:at] + target + prompt[at + len(concept):]


def aligned(model: Model, prompt: str, concept: str, goal: str, length: int) -> list[int]:
    """For each position of ``prompt``, the position of ``goal`` (its destination) that it maps to."""
    end = position_in_model(model, lambda t: subject_position(t, prompt, concept))
    start = end - len(model.pipe.tokenizer(concept, add_special_tokens=False).input_ids) + 1
    last = position_in_model(model, lambda t: last_token_position(t, goal))
    return [i if i < start else last if i <= end else min(last + i - end, length - 1) for i in range(length)]


def layer_keys_values(model: Model, layers: Sequence[int], concept: str, target: str, prompts: Sequence[str],
                      preserve: Sequence[str] = ()) -> dict[int, KeysValues]:
    """Per edited layer, TIME's keys (every position of each source prompt) and values (its destination's, aligned);
    ``preserve`` prompts are keyed at every position mapped to themselves. Layers that read the same text share one
    object."""
    if model.arch.stream:
        raise UserError(f"--method time keys the text a layer reads, which {model.arch.name}'s joint attention reads "
                        "as a stream that changes every step: use --method loco")
    layers = check_layers(model, layers)
    encoder = make_encoder(model)
    goals = [destination(prompt, concept, target) for prompt in prompts]

    def read(layer: int) -> KeysValues:
        keys, values = [], []
        for prompt, goal in zip(prompts, goals):
            rows, goal_rows = text_rows(model, layer, encoder, prompt), text_rows(model, layer, encoder, goal)
            keys.append(rows)
            values.append(goal_rows[aligned(model, prompt, concept, goal, len(goal_rows))])
        kept = [text_rows(model, layer, encoder, prompt) for prompt in preserve]
        return KeysValues(torch.cat(keys + kept), torch.cat(values + kept), list(prompts),
                          [position_in_model(model, lambda t, p=p: subject_position(t, p, concept)) for p in prompts],
                          position_in_model(model, lambda t: last_token_position(t, goals[0])))

    if shares_text(model, layers):
        return dict.fromkeys(layers, read(layers[0]))
    return {layer: read(layer) for layer in layers}
