"""Pick how many images one pipeline call generates when the user does not say."""

import torch

from compute.models.loading import Model
from compute.settings import Settings

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

    Measures one sample's peak memory in the UNet (both guidance rows) and, where there is one, in the VAE decoder at
    the sweep's size; on a CPU or MPS device returns ``CPU_BATCH``. DeepFloyd IF works in pixel space (no VAE) and its
    UNet reads the T5 embedding (``encoder_hid_dim`` wide) and pools it into the time embedding itself.
    """
    if model.device.type != "cuda":
        return CPU_BATCH
    pipe, dtype, device = model.pipe, model.dtype, model.device
    config, scale = pipe.unet.config, model.latent_scale
    sample = torch.zeros(2, config.in_channels, settings.height // scale, settings.width // scale, dtype=dtype,
                         device=device)
    text = torch.zeros(2, 77, config.encoder_hid_dim or config.cross_attention_dim, dtype=dtype, device=device)
    extra = {}
    if config.addition_embed_type == "text_time":
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        extra["added_cond_kwargs"] = {"text_embeds": torch.zeros(2, pooled, dtype=dtype, device=device),
                                      "time_ids": torch.zeros(2, 6, dtype=dtype, device=device)}
    peak = _peak_bytes(lambda: pipe.unet(sample, torch.tensor([1], device=device), text, **extra))
    if getattr(pipe, "vae", None) is not None:
        peak = max(peak, _peak_bytes(lambda: pipe.vae.decode(sample[:1].to(pipe.vae.dtype))))
    free, _ = torch.cuda.mem_get_info()
    return max(1, min(MAX_BATCH, int(headroom * free / max(peak, 1))))
