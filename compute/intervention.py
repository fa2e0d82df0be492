"""LocoGen's primitive: feed a replacement text embedding to chosen cross-attention layers, per batch sample.

Sample ``i`` of a batch of ``B`` has its own set of swapped layers (``swapped[:, i]``) and its own replacement
(``replacement[i]``). With classifier-free guidance the pipeline runs ``2B`` rows ordered [unconditional, conditional]
(the diffusers convention); only the conditional rows are changed. Without guidance all ``B`` rows are conditional.
The replacement is given as the layers read it: map a text-encoder embedding through ``attention_text`` first.
"""

from collections.abc import Sequence
from contextlib import contextmanager

import torch

from compute.hooks import Hooks


def attention_text(unet, text: torch.Tensor) -> torch.Tensor:
    """``text`` (B, T, D), a text-encoder embedding, as the UNet's text-reading attentions receive it.

    DeepFloyd IF's UNet projects its text input (``encoder_hid_proj``) inside its forward, before any attention;
    SD-1.x/2.x/XL feed it unchanged. Apply once per generation: the replacement is the same at every step.
    """
    param = next(unet.parameters())
    return unet.process_encoder_hidden_states(text.to(device=param.device, dtype=param.dtype), {})


def _swap_hook(mask: torch.Tensor, replacement: torch.Tensor):
    batch = replacement.shape[0]

    def hook(module, args, kwargs):
        positional = "encoder_hidden_states" not in kwargs
        text = args[1] if positional else kwargs["encoder_hidden_states"]
        if text.shape[0] not in (batch, 2 * batch):
            raise RuntimeError(f"text swap prepared for {batch} samples, but the layer got {text.shape[0]} rows")
        repl = replacement.to(device=text.device, dtype=text.dtype)
        cond = text[-batch:]
        swapped = torch.where(mask.to(text.device)[:, None, None], repl, cond)
        text = swapped if text.shape[0] == batch else torch.cat([text[:batch], swapped])
        if positional:
            return (args[0], text, *args[2:]), kwargs
        return args, {**kwargs, "encoder_hidden_states": text}

    return hook


@contextmanager
def swap_per_sample(modules: Sequence[torch.nn.Module], replacement: torch.Tensor, swapped: torch.Tensor):
    """Swap the text input of cross-attention ``modules`` for chosen samples, at every call, until exit.

    Args:
        modules: the model's text-reading attention modules, in forward order (``layers.find_layers``).
        replacement: (B, T, D) text fed to sample ``i`` where it is swapped, as the layers read it
            (``attention_text``).
        swapped: (L, B) bool; ``swapped[l, i]`` swaps layer ``l`` for sample ``i``. Layers with no swapped sample
            get no hook at all, so an empty swap runs the unmodified model.

    Hooks are removed on exit, also when the body raises.
    """
    if swapped.shape != (len(modules), replacement.shape[0]):
        raise ValueError(f"swapped has shape {tuple(swapped.shape)}, expected ({len(modules)}, {replacement.shape[0]})")
    with Hooks() as hooks:
        for module, mask in zip(modules, swapped):
            if mask.any():
                hooks.before(module, _swap_hook(mask, replacement), with_kwargs=True)
        yield


@contextmanager
def swap_text(model, window: tuple[int, int], target: str):
    """Within: every call of ``model.pipe`` feeds the layers of ``window`` (half-open, forward order) the ``target``
    prompt in its conditional rows, whatever the batch size; the unconditional rows of classifier-free guidance and
    every other layer are untouched. For a notebook's own pipeline calls; sweeps batch many windows at once through
    ``generation.generate``.

    Usage::

        with swap_text(model, (8, 10), "a painting"):
            image = model.pipe("a house in the style of van gogh").images[0]
    """
    start, end = window
    if not 0 <= start < end <= len(model.layers):
        raise ValueError(f"window {start}:{end} is invalid for {len(model.layers)} layers")
    with torch.no_grad():
        replacement = attention_text(model.pipe.unet, model.arch.encode(model.pipe, target).cond)

    def hook(module, args, kwargs):
        positional = "encoder_hidden_states" not in kwargs
        text = args[1] if positional else kwargs["encoder_hidden_states"]
        cond = text.shape[0] // 2 if getattr(model.pipe, "do_classifier_free_guidance", False) else text.shape[0]
        swapped = torch.cat([text[:text.shape[0] - cond],
                             replacement.to(device=text.device, dtype=text.dtype).expand(cond, -1, -1)])
        if positional:
            return (args[0], swapped, *args[2:]), kwargs
        return args, {**kwargs, "encoder_hidden_states": swapped}

    with Hooks() as hooks:
        for attention in model.attentions[start:end]:
            hooks.before(attention, hook, with_kwargs=True)
        yield
