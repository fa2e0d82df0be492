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


# How every image's noise is drawn, recorded with runs and evaluations (runs before it drew on the model's device).
NOISE_SOURCE = "cpu generator per case seed, float32 initial noise"


def case_generators(cases: Sequence[Case]) -> list[torch.Generator]:
    """One CPU generator per case, seeded with its seed. Noise is drawn on the CPU whatever the model's device (as the
    official code does, ``torch.Generator().manual_seed(seed)``), so seed N gives the same image on every device,
    up to float error; the pipeline moves each draw to the model. The scheduler's own noise (DeepFloyd IF's DDPM
    variance noise, SD-XL's Euler churn) comes from the same generators, after the initial noise."""
    return [torch.Generator("cpu").manual_seed(case.seed) for case in cases]


def initial_noise(model: Model, generators: Sequence[torch.Generator], settings: Settings) -> torch.Tensor:
    """The initial noise of each case, drawn from its generator in float32 on the CPU: row i is
    ``torch.randn((1, C, h, w), generator=generators[i])`` with C the UNet's input channels and (h, w) the image size
    over the model's latent scale (the official ``init_latent``). Float32 whatever the model's dtype, so a float16
    model on a GPU starts from the same noise, rounded.

    Returns:
        A (len(generators), C, h, w) float32 tensor on the CPU (not yet scaled by the scheduler's initial sigma).
    """
    shape = (1, model.pipe.unet.config.in_channels, settings.height // model.latent_scale,
             settings.width // model.latent_scale)
    return torch.cat([torch.randn(shape, generator=generator, dtype=torch.float32) for generator in generators])


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
    generators = case_generators(cases)
    noise = {}
    if model.arch.takes_latents:
        noise["latents"] = initial_noise(model, generators, settings).to(model.device, model.dtype)
    replacement = attention_text(model.pipe.unet, torch.cat(replacement))
    with torch.no_grad(), swap_per_sample(model.attentions, replacement, swapped):
        out = model.pipe(**model.arch.call_kwargs(rows, uncond), **noise, generator=generators,
                         num_inference_steps=settings.steps, guidance_scale=settings.guidance,
                         height=settings.height, width=settings.width, output_type="np")
    return np.asarray(out.images, dtype=np.float32)


def generate(model: Model, cases: Sequence[Case], settings: Settings, batch_size: int = 8) -> Iterator[np.ndarray]:
    """Generate ``cases`` in batches of ``batch_size``; yields one (n, H, W, 3) array per batch, in case order."""
    encoder = _Encoder(model)
    for batch in _batches(list(cases), batch_size):
        yield generate_batch(model, batch, settings, encoder)
