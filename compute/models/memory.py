"""Where a pipeline's weights live while it generates: all on the device, or offloaded when they do not fit.

- ``model``: accelerate's model CPU offload: components wait on the CPU and each moves to the device while it runs
  (the largest component, the denoiser or T5-XXL, must fit with the activations).
- ``group``: diffusers' group offloading (``enable_group_offload``, block level): the denoiser and text encoders
  move one block at a time, so only a block and the activations occupy the device (slower: every step moves
  every block).
- ``fp8`` (``enable_layerwise_casting``, on request only): the denoiser's weights are stored in float8 (e4m3) and
  cast to the compute dtype layer by layer, halving its memory from bf16; images change by the rounding, so it is
  never chosen automatically.

``auto`` (``contract.names.OFFLOADS``) picks the first exact mode that fits the device's free memory: none, model,
group.
"""

import torch

# Activations, the VAE's decode and the allocator's slack, held free beside the weights (a 1024 px batch of one).
RESERVE = 3 * 2**30


def component_bytes(pipe) -> dict[str, int]:
    """The bytes of each torch component of a pipeline, at the dtypes it holds."""
    return {name: sum(p.numel() * p.element_size() for p in module.parameters())
            for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)}


def choose_offload(sizes: dict[str, int], free: int) -> str:
    """The first of ``none``, ``model``, ``group`` whose device footprint fits ``free`` bytes with ``RESERVE``."""
    if sum(sizes.values()) + RESERVE <= free:
        return "none"
    if max(sizes.values()) + RESERVE <= free:
        return "model"
    return "group"


def place(pipe, device: torch.device, offload: str, fp8: bool = False, denoiser: str = "transformer") -> str:
    """Put ``pipe`` (loaded on the CPU) on ``device`` as ``offload`` says (``auto``: as ``choose_offload`` finds on
    a CUDA device, none elsewhere), the denoiser stored in float8 if ``fp8``; returns the mode used."""
    if fp8:
        model = getattr(pipe, denoiser)
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=model.dtype)
    if offload == "auto":
        offload = (choose_offload(component_bytes(pipe), torch.cuda.mem_get_info(device)[0])
                   if device.type == "cuda" else "none")
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "group":
        pipe.enable_group_offload(onload_device=device, offload_type="block_level", num_blocks_per_group=1)
    else:
        pipe.to(device)
    return offload
