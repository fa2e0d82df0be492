"""Batched LocoGen generation: many (prompt, window, seed) cases in one pipeline call per denoising step."""

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from locolab.compute.intervention import attention_text, swap_per_sample, swap_stream
from locolab.compute.models.architectures import Conditioning
from locolab.compute.models.loading import Model
from locolab.compute.settings import Settings
from locolab.contract.errors import UserError


@dataclass(frozen=True)
class Case:
    """One image to generate.

    Attributes:
        prompt: the prompt every non-swapped layer (and the pooled/unconditional inputs) sees, or its precomputed
            ``Conditioning`` (e.g. a corrupted embedding, for causal tracing).
        seed: the seed of this image's own generator.
        window: half-open layer range ``(start, end)`` fed ``target`` instead, or None for no swap.
        target: the replacement prompt; required with a window or sites.
        sites: layers fed ``target``, any set (attention contribution's top-k blocks); instead of a window.
        swap_pooled: swapped cases also take the target's pooled text embedding (SD-XL, FLUX.1), which enters every
            block through the time embedding: not a local intervention (the DiT paper's FLUX code does it).
    """

    prompt: str | Conditioning
    seed: int
    window: tuple[int, int] | None = None
    target: str | None = None
    sites: tuple[int, ...] | None = None
    swap_pooled: bool = False

    @property
    def swapped(self) -> tuple[int, ...]:
        """The layers fed the target."""
        return tuple(range(*self.window)) if self.window else tuple(self.sites or ())


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
    ``torch.randn((1, C, h, w), generator=generators[i])`` with C the denoiser's input channels and (h, w) the image
    size over the model's latent scale (the official ``init_latent``). Float32 whatever the model's dtype, so a float16
    model on a GPU starts from the same noise, rounded.

    Returns:
        A (len(generators), C, h, w) float32 tensor on the CPU (not yet scaled by the scheduler's initial sigma).
    """
    shape = (1, model.denoiser.config.in_channels, settings.height // model.latent_scale,
             settings.width // model.latent_scale)
    return torch.cat([torch.randn(shape, generator=generator, dtype=torch.float32) for generator in generators])


def check_sites(model: Model, sites: Sequence[int]) -> None:
    """Reject an empty set of layers or one outside ``0..L-1``."""
    count = len(model.layers)
    if not sites or not all(0 <= i < count for i in sites):
        raise UserError(f"layers {list(sites)} are invalid for {count} layers: use indices 0..{count - 1}")


def with_companions(cases: Sequence[Case]) -> tuple[list[Case], list[int]]:
    """``cases`` and, for each, the case whose generation its swapped layers read the text of: for a swapped case,
    the plain generation of its target with its seed (appended when the batch lacks it); for any other case, itself.
    A joint-attention transformer's text stream exists only inside such a generation (``swap_stream``)."""
    cases = list(cases)
    plain = {(c.prompt, c.seed): i for i, c in enumerate(cases)
             if isinstance(c.prompt, str) and not c.swapped and not c.swap_pooled}
    source = []
    for i, case in enumerate(list(cases)):
        if not case.swapped:
            source.append(i)
            continue
        if case.target is None:
            raise UserError("a swapped case needs a target prompt")
        if (case.target, case.seed) not in plain:
            plain[case.target, case.seed] = len(cases)
            cases.append(Case(case.target, case.seed))
        source.append(plain[case.target, case.seed])
    return cases, source + list(range(len(source), len(cases)))


def generate_batch(model: Model, cases: Sequence[Case], settings: Settings,
                   encoder: _Encoder | None = None) -> np.ndarray:
    """Generate ``cases`` in one pipeline call; returns (N, H, W, 3) float32 images in [0, 1].

    On a joint-attention transformer each swapped case brings its companion (``with_companions``) into the call,
    so a call runs up to twice as many images as it returns.
    """
    encoder = encoder or _Encoder(model)
    count = len(cases)
    cases, source = with_companions(cases) if model.arch.stream else (list(cases), None)
    rows, replacement = [], []
    swapped = torch.zeros(len(model.layers), len(cases), dtype=torch.bool)
    for i, case in enumerate(cases):
        cond = case.prompt if isinstance(case.prompt, Conditioning) else encoder(case.prompt)
        if case.window:
            check_window(model, case.window)
        elif case.sites is not None:
            check_sites(model, case.sites)
        if case.swap_pooled and case.swapped:
            if not model.arch.pooled:
                raise UserError(f"{model.arch.name} has no pooled text embedding to swap: drop swap_pooled")
            target = encoder(case.target)
            cond = Conditioning(cond.cond, {**cond.extras, **{k: target.extras[k] for k in model.arch.pooled}})
        rows.append(cond)
        replacement.append(encoder(case.target) if case.swapped else cond)
        swapped[list(case.swapped), i] = True
    uncond = encoder.negative()
    generators = case_generators(cases)
    noise = {}
    if model.arch.takes_latents:
        noise["latents"] = initial_noise(model, generators, settings).to(model.device, model.dtype)
    if model.arch.stream:
        swap = swap_stream(model.attentions, [layer.block for layer in model.layers], swapped, source,
                           rows[0].cond.shape[1])
    else:
        masks = [r.extras["prompt_attention_mask"] for r in replacement] if model.arch.text_mask else None
        swap = swap_per_sample(model.attentions, attention_text(model, torch.cat([r.cond for r in replacement])),
                               swapped, masks and model.arch.mask_bias(torch.cat(masks), model.dtype))
    with torch.no_grad(), swap:
        out = model.pipe(**model.arch.call_kwargs(rows, uncond), **noise, generator=generators,
                         num_inference_steps=settings.steps, guidance_scale=settings.guidance,
                         height=settings.height, width=settings.width, output_type="np")
    return np.asarray(out.images, dtype=np.float32)[:count]


def generate(model: Model, cases: Sequence[Case], settings: Settings, batch_size: int = 8) -> Iterator[np.ndarray]:
    """Generate ``cases`` in batches of ``batch_size``; yields one (n, H, W, 3) array per batch, in case order."""
    encoder = _Encoder(model)
    for batch in _batches(list(cases), batch_size):
        yield generate_batch(model, batch, settings, encoder)
