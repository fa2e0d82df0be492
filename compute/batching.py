"""Pick how many images one pipeline call generates when the user does not say."""

import torch

from .loading import Model
from .settings import Settings

CPU_BATCH = 8  # on a CPU throughput stops improving well before memory runs out
MAX_BATCH = 64


def _peak_bytes(run) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with torch.no_grad():
        run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def auto_batch_size(model: Model, settings: Settings, headroom: float = 0.7) -> int:
    """Images per call that fit in ``headroom`` of the free accelerator memory.

    Measures one sample's peak memory in the UNet (both guidance rows) and in the VAE decoder at the sweep's size;
    on a CPU or MPS device returns ``CPU_BATCH``.
    """
    if model.device.type != "cuda":
        return CPU_BATCH
    pipe, dtype, device = model.pipe, model.dtype, model.device
    side_h, side_w = settings.height // pipe.vae_scale_factor, settings.width // pipe.vae_scale_factor
    latents = torch.zeros(2, pipe.unet.config.in_channels, side_h, side_w, dtype=dtype, device=device)
    text = torch.zeros(2, 77, pipe.unet.config.cross_attention_dim, dtype=dtype, device=device)
    extra = {}
    if pipe.unet.config.addition_embed_type == "text_time":
        pooled = pipe.unet.config.projection_class_embeddings_input_dim - 6 * pipe.unet.config.addition_time_embed_dim
        extra["added_cond_kwargs"] = {"text_embeds": torch.zeros(2, pooled, dtype=dtype, device=device),
                                      "time_ids": torch.zeros(2, 6, dtype=dtype, device=device)}
    unet = _peak_bytes(lambda: pipe.unet(latents, torch.tensor([1], device=device), text, **extra))
    vae = _peak_bytes(lambda: pipe.vae.decode(latents[:1].to(pipe.vae.dtype)))
    free, _ = torch.cuda.mem_get_info()
    return max(1, min(MAX_BATCH, int(headroom * free / max(unet, vae, 1))))
