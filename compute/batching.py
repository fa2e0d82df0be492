"""Pick how many images one pipeline call generates when the user does not say."""

import torch

from locolab.compute.models.loading import Model
from locolab.compute.settings import Settings

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

    Measures one sample's peak memory in the denoiser and, where there is one, in the VAE decoder at the sweep's size;
    on a CPU or MPS device returns ``CPU_BATCH``. UNets: ``_unet_batch``. Diffusion transformers: ``_transformer_peak``;
    a joint-attention transformer's swapped images bring their companion generations into the call (``generation.
    with_companions``), so it gets half the images.
    """
    if model.device.type != "cuda":
        return CPU_BATCH
    if model.arch.denoiser != "unet":
        peak = _transformer_peak(model, settings)
        free, _ = torch.cuda.mem_get_info()
        batch = max(1, min(MAX_BATCH, int(headroom * free / max(peak, 1))))
        return max(1, batch // 2) if model.arch.stream else batch
    return _unet_batch(model, settings, headroom)


def _vae_peak(model: Model, settings: Settings, measure=_peak_bytes) -> int:
    """Peak memory of decoding one image (0 without a VAE)."""
    vae = getattr(model.pipe, "vae", None)
    if vae is None:
        return 0
    scale = model.latent_scale
    latent = torch.zeros(1, vae.config.latent_channels, settings.height // scale, settings.width // scale,
                         dtype=vae.dtype, device=model.device)
    return measure(lambda: vae.decode(latent))


def _transformer_peak(model: Model, settings: Settings, measure=_peak_bytes) -> int:
    """One image's memory in a diffusion transformer's denoising step (both guidance rows where there are two), at
    the sweep's size and the model's text length, measured as the difference between calls of two images and of one
    (after a first call, which also moves an offloaded transformer onto the device), or in the VAE decoder, whichever
    is larger. Attention over image and text tokens grows with their square, so it is measured, not estimated.
    ``measure(run)`` gives the peak accelerator memory of ``run()``."""
    arch, denoiser = model.arch, model.denoiser
    with torch.no_grad():
        tokens = arch.encode(model.pipe, "a").cond.shape[1]
    rows = 2 if arch.cfg and settings.guidance > 1 else 1
    latent = settings.height // model.latent_scale

    def step(images: int) -> int:
        inputs = arch.probe_inputs(denoiser, rows * images, latent, tokens)
        return measure(lambda: denoiser(**{k: v.to(model.device) if torch.is_tensor(v) else v
                                           for k, v in inputs.items()}))

    step(1)
    marginal = step(2) - step(1)
    return max(marginal, _vae_peak(model, settings, measure))


def _unet_batch(model: Model, settings: Settings, headroom: float) -> int:
    """``auto_batch_size`` of a UNet: one sample's peak memory in the UNet (both guidance rows) and the VAE decoder.
    DeepFloyd IF works in pixel space (no VAE) and its UNet reads the T5 embedding (``encoder_hid_dim`` wide) and pools
    it into the time embedding itself."""
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
