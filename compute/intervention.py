"""LocoGen's primitive: feed a replacement text to chosen text-reading attention layers, per batch sample.

Sample ``i`` of a batch of ``B`` has its own set of swapped layers (``swapped[:, i]``) and its own replacement
(``replacement[i]``). With classifier-free guidance the pipeline runs ``2B`` rows ordered [unconditional, conditional]
(the diffusers convention); only the conditional rows are changed. Without guidance (or a guidance-distilled model,
FLUX.1) all ``B`` rows are conditional. The replacement is given as the layers read it: map a text-encoder embedding
through ``attention_text`` first; where the layers apply a text padding mask (PixArt), the mask is swapped with
the text.

Joint-attention transformers (FLUX.1, SD3) read a text stream that depends on the image, so their replacement is not
a fixed tensor: ``swap_stream`` copies, at every call, the text input of another sample of the batch (the
knowledge-free prompt's own generation: ``architectures.JOINT_SWAP``).
"""

from collections.abc import Sequence
from contextlib import contextmanager

import torch

from locolab.compute.hooks import Hooks
from locolab.compute.models.architectures import SINGLE


def attention_text(model, text: torch.Tensor) -> torch.Tensor:
    """``text`` (B, T, D), a text-encoder embedding, as the model's text-reading attentions receive it.

    DeepFloyd IF's UNet projects its text input (``encoder_hid_proj``) inside its forward, before any attention;
    PixArt's transformer projects the caption; SD-1.x/2.x/XL feed it unchanged
    (``Architecture.attention_text``). Apply once per generation: the replacement is the same at every step.
    """
    return model.arch.attention_text(model.denoiser, text)


def _rows_swapped(kwargs: dict, args: tuple, key: str, position: int, mask: torch.Tensor, value: torch.Tensor):
    """(args, kwargs) with the conditional rows of ``mask``'s samples of one input replaced by ``value``'s rows."""
    batch = value.shape[0]
    positional = key not in kwargs
    current = args[position] if positional else kwargs[key]
    if current.shape[0] not in (batch, 2 * batch):
        raise RuntimeError(f"text swap prepared for {batch} samples, but the layer got {current.shape[0]} rows")
    cond = current[-batch:]
    chosen = mask.to(current.device).view(-1, *[1] * (cond.ndim - 1))
    swapped = torch.where(chosen, value.to(device=current.device, dtype=current.dtype), cond)
    current = swapped if current.shape[0] == batch else torch.cat([current[:batch], swapped])
    if positional:
        return (*args[:position], current, *args[position + 1:]), kwargs
    return args, {**kwargs, key: current}


def _swap_hook(mask: torch.Tensor, replacement: torch.Tensor, replacement_mask: torch.Tensor | None = None):
    def hook(module, args, kwargs):
        args, kwargs = _rows_swapped(kwargs, args, "encoder_hidden_states", 1, mask, replacement)
        if replacement_mask is not None:
            args, kwargs = _rows_swapped(kwargs, args, "attention_mask", 2, mask, replacement_mask)
        return args, kwargs

    return hook


@contextmanager
def swap_per_sample(modules: Sequence[torch.nn.Module], replacement: torch.Tensor, swapped: torch.Tensor,
                    replacement_mask: torch.Tensor | None = None):
    """Swap the text input of cross-attention ``modules`` for chosen samples, at every call, until exit.

    Args:
        modules: the model's text-reading attention modules, in forward order (``layers.find_layers``).
        replacement: (B, T, D) text fed to sample ``i`` where it is swapped, as the layers read it
            (``attention_text``).
        swapped: (L, B) bool; ``swapped[l, i]`` swaps layer ``l`` for sample ``i``. Layers with no swapped sample
            get no hook at all, so an empty swap runs the unmodified model.
        replacement_mask: (B, 1, T) the replacement's padding mask as the layers read it
            (``Architecture.mask_bias``), swapped with the text; None where the layers read no mask.

    Hooks are removed on exit, also when the body raises.
    """
    if swapped.shape != (len(modules), replacement.shape[0]):
        raise ValueError(f"swapped has shape {tuple(swapped.shape)}, expected ({len(modules)}, {replacement.shape[0]})")
    with Hooks() as hooks:
        for module, mask in zip(modules, swapped):
            if mask.any():
                hooks.before(module, _swap_hook(mask, replacement, replacement_mask), with_kwargs=True)
        yield


def _stream_hook(kind: str, mask: torch.Tensor, source: torch.Tensor, text_len: int):
    batch = mask.shape[0]
    key = "hidden_states" if kind == SINGLE else "encoder_hidden_states"

    def hook(module, args, kwargs):
        if key not in kwargs:
            raise RuntimeError(f"a {kind} block's attention was called without {key}=: unsupported diffusers version?")
        text = kwargs[key]
        if text.shape[0] not in (batch, 2 * batch):
            raise RuntimeError(f"text swap prepared for {batch} samples, but the layer got {text.shape[0]} rows")
        offset = text.shape[0] - batch  # the conditional rows start here
        rows = torch.arange(text.shape[0])
        rows[offset:] = torch.where(mask, source + offset, rows[offset:])
        rows = rows.to(text.device)
        if kind == SINGLE:  # the text rows of the [text; image] sequence only
            text = torch.cat([text[rows, :text_len], text[:, text_len:]], dim=1)
        else:
            text = text[rows]
        return args, {**kwargs, key: text}

    return hook


@contextmanager
def swap_stream(modules: Sequence[torch.nn.Module], kinds: Sequence[str], swapped: torch.Tensor,
                source: Sequence[int], text_len: int):
    """Joint attention's swap (``architectures.JOINT_SWAP``): at every call of each chosen site, a swapped sample's
    conditional row reads the text its source sample's conditional row reads there, until exit.

    Args:
        modules: the model's text-reading attention modules, in forward order.
        kinds: each module's kind (``Layer.block``): double-stream/joint blocks' attentions get their text as
            ``encoder_hidden_states``, single-stream blocks' as the first ``text_len`` rows of ``hidden_states``.
        swapped: (L, B) bool; ``swapped[l, i]`` swaps layer ``l`` for sample ``i``. Layers with no swapped sample get
            no hook at all.
        source: (B,) the sample whose text each sample reads where it is swapped (the knowledge-free prompt's
            generation with the same seed, in the same batch); it must not be swapped itself at that layer.
        text_len: the number of text tokens.

    Hooks are removed on exit, also when the body raises.
    """
    source = torch.as_tensor(source)
    if swapped.shape != (len(modules), len(source)):
        raise ValueError(f"swapped has shape {tuple(swapped.shape)}, expected ({len(modules)}, {len(source)})")
    for mask in swapped:
        if (mask & mask[source]).any():
            raise ValueError("a swap's source sample is swapped at the same layer: its text would not be its own")
    with Hooks() as hooks:
        for module, kind, mask in zip(modules, kinds, swapped):
            if mask.any():
                hooks.before(module, _stream_hook(kind, mask, source, text_len), with_kwargs=True)
        yield


def conditional_rows(latents: torch.Tensor) -> int:
    """How many of a denoiser call's rows are conditional, from its latent input alone: a classifier-free batch
    repeats the latents ([x; x], unconditional rows first, as every diffusers pipeline does), two different samples
    do not. (Two samples given the very same noise and no guidance would read as one guided sample.)"""
    half = latents.shape[0] // 2
    guided = latents.shape[0] % 2 == 0 and torch.equal(latents[:half], latents[half:])
    return half if guided else latents.shape[0]


@contextmanager
def swap_text(model, window: tuple[int, int], target: str):
    """Within: every call of ``model.pipe`` feeds the layers of ``window`` (half-open, forward order) the ``target``
    prompt in its conditional rows, whatever the batch size; the unconditional rows of classifier-free guidance and
    every other layer are untouched (which rows are conditional is read from each denoiser call's batch:
    ``conditional_rows``, as the pipelines keep no common flag for it). For a notebook's own pipeline calls; sweeps
    batch many windows at once through ``generation.generate``.

    Usage::

        with swap_text(model, (8, 10), "a painting"):
            image = model.pipe("a house in the style of van gogh").images[0]
    """
    start, end = window
    if not 0 <= start < end <= len(model.layers):
        raise ValueError(f"window {start}:{end} is invalid for {len(model.layers)} layers")
    if model.arch.stream:
        raise ValueError(f"{model.arch.name}'s joint attention reads a text stream that only a generation of the "
                         "target gives: use generation.generate with Case(prompt, seed, window, target)")
    with torch.no_grad():
        target_cond = model.arch.encode(model.pipe, target)
        replacement = attention_text(model, target_cond.cond)
        mask = target_cond.extras.get("prompt_attention_mask")
        replacement_mask = None if mask is None else model.arch.mask_bias(mask, model.dtype)

    conditional = {}

    def rows(module, args, kwargs):
        conditional["rows"] = conditional_rows(args[0] if args else kwargs.get("sample", kwargs.get("hidden_states")))

    def hook(module, args, kwargs):
        cond = conditional["rows"]
        every = torch.ones(cond, dtype=torch.bool)
        args, kwargs = _rows_swapped(kwargs, args, "encoder_hidden_states", 1, every, replacement.expand(cond, -1, -1))
        if replacement_mask is not None:
            args, kwargs = _rows_swapped(kwargs, args, "attention_mask", 2, every,
                                         replacement_mask.expand(cond, -1, -1))
        return args, kwargs

    with Hooks() as hooks:
        hooks.before(model.denoiser, rows, with_kwargs=True)
        for attention in model.attentions[start:end]:
            hooks.before(attention, hook, with_kwargs=True)
        yield
