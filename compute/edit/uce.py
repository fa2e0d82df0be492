"""UCE, Unified Concept Editing (Gandikota et al., WACV 2024; rohitgandikota/unified-concept-editing), docs/method.md
§4.3.

Each edited key/value matrix W (original W0) minimizes

    s_e Σ_erase ||W c_i − W0 c*_i||² + s_p Σ_preserve ||W c_j − W0 c_j||² + λ ||W − W0||²_F,

so W* = (λ W0 + s_e Σ W0 c*_i c_iᵀ + s_p Σ W0 c_j c_jᵀ)(λ I + s_e Σ c_i c_iᵀ + s_p Σ c_j c_jᵀ)⁻¹ (the paper's eq. 7,
its code's ``mat1 @ inverse(mat2)``). That is LocoEdit's closed form on keys and values scaled by √s, so it is solved
by ``closed_form.solve_factor`` as a float64 rank-n update.

Erased keys: the concept's last subject token in each source prompt (the concept alone, UCE's own key, and the
family's templates, as its ``--expand_prompts``), each mapped to the target's last token. Preserved keys: the last
token of each of the family's other concepts and of each preservation prompt, mapped to itself.
"""

import math
from collections.abc import Sequence

import torch

from locolab.compute.edit.closed_form import KeysValues, check_layers, subject_keys_values
from locolab.compute.generation import make_encoder
from locolab.compute.models.loading import Model
from locolab.compute.tokens import last_token_position, position_in_model, shares_text, text_rows
from locolab.contract.errors import UserError


def preserved_keys(model: Model, layer: int, encoder, texts: Sequence[str]) -> torch.Tensor:
    """The last token of each text as ``layer`` reads it, (len(texts), d) float64 (UCE's one key per concept)."""
    return torch.stack([text_rows(model, layer, encoder, text)[
        position_in_model(model, lambda t, p=text: last_token_position(t, p))] for text in texts])


def layer_keys_values(model: Model, layers: Sequence[int], concepts: Sequence[tuple[str, Sequence[str]]], target: str,
                      preserve: Sequence[str], erase_scale: float, preserve_scale: float,
                      padding: bool = False) -> dict[int, KeysValues]:
    """Per edited layer, UCE's scaled keys and values (layers that read the same text share one object).

    Args:
        model: the model (not a joint-attention transformer, whose text changes every step).
        layers: the edited layers.
        concepts: each erased concept with its source prompts.
        target: the prompt every erased key is mapped to (UCE's guide concept).
        preserve: texts whose last token is kept as it is.
        erase_scale: s_e.
        preserve_scale: s_p.
        padding: also key the positions after each last subject token (``subject_keys_values``).
    """
    if model.arch.stream:
        raise UserError(f"--method uce keys the text a layer reads, which {model.arch.name}'s joint attention reads as "
                        "a stream that changes every step: use --method loco")
    layers = check_layers(model, layers)
    encoder = make_encoder(model)

    def read(layer: int) -> KeysValues:
        erased = [subject_keys_values(model, concept, target, prompts, padding, (), layer, encoder)
                  for concept, prompts in concepts]
        kept = preserved_keys(model, layer, encoder, preserve) if preserve else torch.zeros(0, erased[0].keys.shape[1],
                                                                                             dtype=torch.float64)
        e, p = math.sqrt(erase_scale), math.sqrt(preserve_scale)
        return KeysValues(torch.cat([e * kv.keys for kv in erased] + [p * kept]),
                          torch.cat([e * kv.values for kv in erased] + [p * kept]),
                          [prompt for kv in erased for prompt in kv.prompts],
                          [position for kv in erased for position in kv.positions], erased[0].target_position)

    if shares_text(model, layers):
        return dict.fromkeys(layers, read(layers[0]))
    return {layer: read(layer) for layer in layers}
