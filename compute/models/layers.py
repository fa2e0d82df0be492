"""Text-reading attention layers of a denoiser (a UNet's cross-attentions, a diffusion transformer's text-reading
attention sites) in forward (execution) order, found by a probe forward pass.

Module registration order lists up blocks before the mid block, and sorting names breaks with two-digit indices, so
the order is recorded with forward pre-hooks on one small probe call instead.
"""

import math
import re
from dataclasses import asdict, dataclass

import torch
from diffusers.models.attention_processor import Attention

from locolab.compute.hooks import Hooks

_PATH = re.compile(r"(down_blocks|up_blocks|mid_block)(?:\.(\d+))?\.attentions\.(\d+)(?:\.transformer_blocks\.(\d+))?")


@dataclass(frozen=True)
class Layer:
    """One cross-attention layer: where it is, what resolution it sees, and its shapes."""

    index: int
    path: str
    block: str
    block_index: int
    attention_index: int
    transformer_index: int
    resolution: int
    heads: int
    query_dim: int
    text_dim: int
    inner_dim: int

    def to_dict(self) -> dict:
        return asdict(self)


def is_text_attention(module: torch.nn.Module) -> bool:
    """Whether a module is an attention that reads the text: an ``attn2`` (key/value from the text only) or an
    attention with added key/value projections (DeepFloyd IF: text keys joined to the image's own)."""
    return isinstance(module, Attention) and (module.is_cross_attention or module.added_kv_proj_dim is not None)


def _probe_inputs(unet, side: int) -> dict:
    config, param = unet.config, next(unet.parameters())
    text_width = config.encoder_hid_dim or config.cross_attention_dim
    inputs = {"sample": torch.zeros(1, config.in_channels, side, side, dtype=param.dtype, device=param.device),
              "timestep": torch.tensor([1], device=param.device),
              "encoder_hidden_states": torch.zeros(1, 8, text_width, dtype=param.dtype, device=param.device)}
    if config.addition_embed_type == "text_time":
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        inputs["added_cond_kwargs"] = {"text_embeds": torch.zeros(1, pooled, dtype=param.dtype, device=param.device),
                                       "time_ids": torch.zeros(1, 6, dtype=param.dtype, device=param.device)}
    return inputs


def forward_order(unet, modules, latent_size: int) -> list[tuple[torch.nn.Module, int]]:
    """``modules`` (of ``unet``) in the order a probe forward pass first calls them, each with the spatial side of its
    input when the UNet's latent side is ``latent_size``. Modules the pass does not call are left out."""
    seen: dict[torch.nn.Module, int] = {}

    def record(module, args, kwargs):
        hidden = args[0] if args else next(iter(kwargs.values()))
        seen.setdefault(module, hidden.shape[-1] if hidden.ndim == 4 else math.isqrt(hidden.shape[1]))

    probe_side = 2 ** len(unet.config.block_out_channels)
    with Hooks() as hooks, torch.no_grad():
        for module in modules:
            hooks.before(module, record, with_kwargs=True)
        unet(**_probe_inputs(unet, probe_side))
    return [(module, latent_size * side // probe_side) for module, side in seen.items()]


def resolution_at(resolution: int | None, default_size: int, size: int) -> int | None:
    """A layer's input side when the model generates ``size``-pixel images, from its side ``resolution`` at the
    model's ``default_size`` (None stays None: a site without a spatial input, e.g. a text-encoder layer)."""
    if resolution is None:
        return None
    return max(1, size * resolution // default_size)


def call_order(denoiser, modules, inputs: dict) -> list[torch.nn.Module]:
    """``modules`` (of ``denoiser``) in the order one forward call with ``inputs`` first calls them; modules it does
    not call are left out."""
    seen: dict[torch.nn.Module, None] = {}
    with Hooks() as hooks, torch.no_grad():
        for module in modules:
            hooks.before(module, lambda module, args: seen.setdefault(module))
        denoiser(**inputs)
    return list(seen)


def find_transformer_layers(transformer, sites: list[tuple[str, torch.nn.Module, str]], inputs: dict,
                            side: int) -> tuple[list[Layer], list[torch.nn.Module]]:
    """The text-reading attention sites of a diffusion transformer in forward order.

    Args:
        transformer: the pipeline's transformer.
        sites: its sites as (module path, module, kind) (``Architecture.sites``).
        inputs: a small forward call's keyword arguments (``Architecture.probe_inputs``).
        side: image tokens per side at the model's default size (every block sees the same token grid).

    Returns:
        (layers, modules) as ``find_layers``; a layer's ``block`` is its kind (cross, double, single, joint) and
        ``block_index`` its index among the transformer's blocks of that kind.
    """
    found = {module: (path, kind) for path, module, kind in sites}
    order = call_order(transformer, found, inputs)
    layers = []
    for index, module in enumerate(order):
        path, kind = found[module]
        text = module.add_k_proj if getattr(module, "added_kv_proj_dim", None) is not None else module.to_k
        layers.append(Layer(index=index, path=path, block=kind, block_index=int(path.split(".")[1]),
                            attention_index=0, transformer_index=0, resolution=side, heads=module.heads,
                            query_dim=module.to_q.in_features, text_dim=text.in_features,
                            inner_dim=module.to_k.out_features))
    return layers, order


def find_layers(unet, latent_size: int | None = None) -> tuple[list[Layer], list[Attention]]:
    """Find the text-reading attention layers of ``unet`` in forward order.

    Args:
        unet: a diffusers ``UNet2DConditionModel``.
        latent_size: latent side at the model's default image size (for the ``resolution`` column);
            defaults to ``unet.config.sample_size``.

    Returns:
        (layers, modules): one ``Layer`` per layer and the matching attention modules, both in forward order.
    """
    names = {module: name for name, module in unet.named_modules() if is_text_attention(module)}
    if not names:
        return [], []
    seen = forward_order(unet, names, latent_size or unet.config.sample_size)
    layers = []
    for index, (module, resolution) in enumerate(seen):
        path = names[module]
        match = _PATH.search(path)
        block, block_index, attention_index, transformer_index = match.groups() if match else ("", 0, 0, 0)
        layers.append(Layer(
            index=index, path=path, block=block.split("_")[0], block_index=int(block_index or 0),
            attention_index=int(attention_index or 0), transformer_index=int(transformer_index or 0),
            resolution=resolution, heads=module.heads, query_dim=module.to_q.in_features,
            text_dim=(module.to_k if module.added_kv_proj_dim is None else module.add_k_proj).in_features,
            inner_dim=module.to_k.out_features))
    return layers, [module for module, _ in seen]
