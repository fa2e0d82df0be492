"""Batched LocoGen generation: many (prompt, window, seed) cases in one pipeline call per denoising step."""

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from compute.intervention import attention_text, swap_per_sample
from compute.models.architectures import Conditioning
from compute.models.loading import Model
from compute.settings import Settings
from contract.errors import UserError


@dataclass(frozen=True)
class Case:
    """One image to generate.

    Attributes:
        prompt: the prompt every non-swapped layer (and the pooled/unconditional inputs) sees, or its precomputed
            ``Conditioning`` (e.g. a corrupted embedding, for causal tracing).
        seed: the seed of this image's own generator.
        window: half-open layer range ``(start, end)`` fed ``target`` instead, or None for no swap.
        target: the replacement prompt; required with a window.
    """

    prompt: str | Conditioning
    seed: int
    window: tuple[int, int] | None = None
    target: str | None = None


def check_prompt(model: Model, prompt: str) -> bool:
    """Reject an empty prompt; warn when it is longer than the text encoder reads. Returns True if truncated."""
    if not prompt.strip():
        raise UserError("empty prompt: give a non-empty --prompt/--target")
    tokenizer = model.pipe.tokenizer
    tokens = len(tokenizer(prompt).input_ids)
    if tokens > tokenizer.model_max_length:
        warnings.warn(f"prompt has {tokens} tokens, the text encoder reads {tokenizer.model_max_length}: "
                      f"truncated: {prompt[:60]!r}...", stacklevel=2)
        return True
    return False


def check_window(model: Model, window: tuple[int, int]) -> None:
    """Reject a window that is empty or outside ``0..L``."""
    start, end = window
    count = len(model.layers)
    if not 0 <= start < end <= count:
        raise UserError(f"window {start}:{end} is invalid for {count} layers: need 0 <= START < END <= {count}")


class _Encoder:
    """Encodes each distinct prompt once, alone, so embeddings do not depend on which prompts share a batch; the
    unconditional inputs are encoded once, on first use."""

    def __init__(self, model: Model):
        self.model, self.cache, self._negative = model, {}, None

    def __call__(self, prompt: str) -> Conditioning:
        if prompt not in self.cache:
            with torch.no_grad():
                self.cache[prompt] = self.model.arch.encode(self.model.pipe, prompt)
        return self.cache[prompt]

    def negative(self) -> Conditioning:
        if self._negative is None:
            with torch.no_grad():
                self._negative = self.model.arch.encode_negative(self.model.pipe)
        return self._negative


def make_encoder(model: Model) -> _Encoder:
    """A prompt-embedding cache to share across ``generate_batch`` calls on one model."""
    return _Encoder(model)


def _batches(cases: Sequence[Case], size: int) -> Iterator[Sequence[Case]]:
    for start in range(0, len(cases), size):
        yield cases[start:start + size]


def generate_batch(model: Model, cases: Sequence[Case], settings: Settings,
                   encoder: _Encoder | None = None) -> np.ndarray:
    """Generate ``cases`` in one pipeline call; returns (N, H, W, 3) float32 images in [0, 1]."""
    encoder = encoder or _Encoder(model)
    rows, replacement = [], []
    swapped = torch.zeros(len(model.layers), len(cases), dtype=torch.bool)
    for i, case in enumerate(cases):
        cond = case.prompt if isinstance(case.prompt, Conditioning) else encoder(case.prompt)
        rows.append(cond)
        replacement.append(encoder(case.target).cond if case.window else cond.cond)
        if case.window:
            check_window(model, case.window)
            swapped[case.window[0]:case.window[1], i] = True
    uncond = encoder.negative()
    device = "cpu" if model.device.type == "mps" else model.device
    generators = [torch.Generator(device).manual_seed(case.seed) for case in cases]
    replacement = attention_text(model.pipe.unet, torch.cat(replacement))
    with torch.no_grad(), swap_per_sample(model.attentions, replacement, swapped):
        out = model.pipe(**model.arch.call_kwargs(rows, uncond), generator=generators,
                         num_inference_steps=settings.steps, guidance_scale=settings.guidance,
                         height=settings.height, width=settings.width, output_type="np")
    return np.asarray(out.images, dtype=np.float32)


def generate(model: Model, cases: Sequence[Case], settings: Settings, batch_size: int = 8) -> Iterator[np.ndarray]:
    """Generate ``cases`` in batches of ``batch_size``; yields one (n, H, W, 3) array per batch, in case order."""
    encoder = _Encoder(model)
    for batch in _batches(list(cases), batch_size):
        yield generate_batch(model, batch, settings, encoder)
