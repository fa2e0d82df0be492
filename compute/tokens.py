"""Token positions in prompts (the last subject token, the last token) and the text a layer reads there."""

from collections.abc import Sequence
from types import SimpleNamespace

import torch

from locolab.compute.intervention import attention_text
from locolab.compute.models.architectures import instruction
from locolab.compute.models.loading import Model
from locolab.contract.errors import UserError


def _token_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids


def subject_position(tokenizer, prompt: str, subject: str) -> int:
    """Position of the last subject token: the last token of the last occurrence of ``subject``'s tokens in
    ``prompt`` as the text encoder reads it (for a prompt ending in the subject, the token before end-of-text)."""
    if subject.strip().lower() not in prompt.lower():
        raise UserError(f"concept {subject!r} does not occur in the source prompt {prompt!r}")
    ids = _token_ids(tokenizer, prompt)
    sub = tokenizer(subject, add_special_tokens=False).input_ids
    starts = [i for i in range(len(ids) - len(sub) + 1) if ids[i:i + len(sub)] == sub]
    if not sub or not starts:
        raise UserError(f"the tokens of {subject!r} are not in the tokens of {prompt!r} "
                        "(a different word split, or truncation): rephrase the prompt")
    return starts[-1] + len(sub) - 1


def last_token_position(tokenizer, prompt: str) -> int:
    """Position of the token before the first end-of-text token."""
    ids = _token_ids(tokenizer, prompt)
    return ids.index(tokenizer.eos_token_id) - 1


class InstructedTokenizer:
    """SANA's tokenizer as its layers read a prompt (``SanaPipeline.encode_prompt``): the prompt lower-cased behind
    the pipeline's system instruction (``architectures.instruction``), padded, then cut to the first token and the
    last ``model_max_length - 1``, so a position found with it indexes the caption the layers read. Gemma adds no
    end token: ``eos_token_id`` is the padding's, so the prompt's last token is the one before the padding. A
    subject's tokens are taken as they occur inside a prompt, after a space."""

    def __init__(self, pipe, max_length: int = 300):
        self.tokenizer = pipe.tokenizer
        self.prefix = "\n".join(instruction(pipe))
        self.model_max_length = max_length
        self.eos_token_id = pipe.tokenizer.pad_token_id
        self.length = len(pipe.tokenizer.encode(self.prefix)) + max_length - 2

    def __call__(self, text: str, add_special_tokens: bool = True, **_):
        if not add_special_tokens:
            return self.tokenizer(" " + text.lower(), add_special_tokens=False)
        ids = self.tokenizer(self.prefix + text.lower().strip(), padding="max_length", max_length=self.length,
                             truncation=True).input_ids
        return SimpleNamespace(input_ids=[ids[0]] + ids[self.length - self.model_max_length + 1:])


def _tokenizers(model: Model) -> list:
    if model.arch.name == "sana":
        return [InstructedTokenizer(model.pipe)]
    if model.arch.sequence_tokenizer != "tokenizer":  # FLUX: its CLIP tokenizer feeds the pooled embedding only
        return [getattr(model.pipe, model.arch.sequence_tokenizer)]
    return [t for t in (model.pipe.tokenizer, getattr(model.pipe, "tokenizer_2", None)) if t is not None]


def position_in_model(model: Model, find) -> int:
    """``find(tokenizer)``, a token position, for the tokenizer(s) of the text the model's layers read.

    SD-XL's cross-attention reads both encoders side by side, so the position must agree between its tokenizers;
    FLUX's layers read the T5 sequence (``Architecture.sequence_tokenizer``).
    """
    positions = {find(tokenizer) for tokenizer in _tokenizers(model)}
    if len(positions) != 1:
        raise UserError(f"the two tokenizers disagree on the token position ({sorted(positions)})")
    return positions.pop()


def sequence_parts(model: Model, find) -> list[tuple[int, int, int | None]]:
    """``find(tokenizer)`` in each part of the text sequence the layers read, as (position in the sequence, the
    part's start, its end or None for the sequence's end): one part (``position_in_model``), or SD3's two: both
    CLIPs side by side (their 77 positions), then T5's (``Architecture.segments``), where a concept occurs twice."""
    if not model.arch.segments:
        return [(position_in_model(model, find), 0, None)]
    split = model.pipe.tokenizer.model_max_length
    t5 = find(getattr(model.pipe, model.arch.segments[-1]))
    return [(position_in_model(model, find), 0, split), (split + t5, split, None)]


def layer_text(model: Model, index: int, text: torch.Tensor) -> torch.Tensor:
    """What the text projections of layer ``index`` read when the UNet is given ``text`` (B, T, D), a
    ``Conditioning.cond``: SD's layers read it as is; PixArt's transformer projects it (``caption_projection``);
    DeepFloyd IF's UNet projects it (``encoder_hid_proj``) and each layer normalizes it with its own GroupNorm, whose
    statistics span every token, so rows must be read from whole prompts. Joint-attention transformers read a text
    stream instead (``stream.text_inputs``)."""
    attention = model.attentions[index]
    text = attention_text(model, text)
    return text if getattr(attention, "norm_cross", None) is None else attention.norm_encoder_hidden_states(text)


def shares_text(model: Model, layers: Sequence[int]) -> bool:
    """Whether ``layers`` all read the same text (no layer normalizes its own), so rows read once serve them all."""
    return all(model.attentions[i].norm_cross is None for i in layers)


def text_rows(model: Model, index: int, encoder, prompt: str) -> torch.Tensor:
    """``layer_text`` of one prompt at every position, (T, d) float64 on the CPU.

    Args:
        model: the model.
        index: the layer.
        encoder: a prompt-embedding cache (``generation.make_encoder``), shared between layers.
        prompt: the prompt.
    """
    with torch.no_grad():
        return layer_text(model, index, encoder(prompt).cond)[0].to("cpu", torch.float64)


def aligned_positions(subject: int, target: int, length: int, padding: bool) -> tuple[list[int], list[int]]:
    """Key positions (the subject token, then with ``padding`` every later one) and the target positions at the same
    offsets after the target's last token, clipped to ``length``."""
    offsets = range(length - subject) if padding else range(1)
    return [subject + k for k in offsets], [min(target + k, length - 1) for k in offsets]


def concept_reach(model: Model, template: str, concept: str, other: str) -> dict[str, float]:
    """Where a concept lives in the text the model's layers read, and what LocoEdit's keys reach of it.

    Encodes ``template`` with ``concept`` and with ``other`` (same token count), and splits the squared change of the
    text (``layer_text`` of layer 0; a joint-attention model's encoder output, which its first block reads after one
    projection) over the positions the layers attend to: the last subject token (``--positions subject`` keys it),
    later ones, end-of-text and attended padding (``subject+padding`` adds them), and earlier ones, the subject's
    other tokens included (no key reaches them). A causal text encoder (CLIP) changes nothing before the concept; a
    bidirectional one (T5) does, the LocoGen paper's reason for LocoEdit failing on DeepFloyd IF. Padding that the
    layers mask out (PixArt) is left out.

    Returns:
        Fractions of the change: ``subject``, ``later`` and ``earlier`` (summing to 1).
    """
    prompts = [template.format(concept=c) for c in (concept, other)]
    tokenizer = _tokenizers(model)[0]
    if len(tokenizer(prompts[0]).input_ids) != len(tokenizer(prompts[1]).input_ids):
        raise UserError(f"{concept!r} and {other!r} have different token counts: choose another pair")
    with torch.no_grad():
        conds = [model.arch.encode(model.pipe, p) for p in prompts]
        texts = [c.cond if model.arch.stream else layer_text(model, 0, c.cond) for c in conds]
    change = ((texts[0] - texts[1]).double() ** 2).sum(-1)[0]
    mask = conds[0].extras.get("prompt_attention_mask")
    if mask is not None:
        change = change * mask[0].to(change)
    last = position_in_model(model, lambda t: subject_position(t, prompts[0], concept))
    total = change.sum()
    return {"subject": float(change[last] / total), "later": float(change[last + 1:].sum() / total),
            "earlier": float(change[:last].sum() / total)}
