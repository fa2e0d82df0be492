"""Built-in full-size models with random weights, built from the real SD-1.5 and SD-XL base configs.

For speed and memory benchmarks on a GPU without downloads: speed does not depend on weight values. Weights are
initialized directly on the target device.
"""

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from compute.models.tiny import SD_SCHEDULER
from compute.models.tokenizer import VOCAB_SIZE, clip_tokenizer

UNET_CONFIGS = {
    "random-sd-1.5": dict(
        sample_size=64, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2, cross_attention_dim=768, attention_head_dim=8),
    "random-sdxl": dict(
        sample_size=128, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(320, 640, 1280),
        layers_per_block=2, transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816),
}


def _clip_l() -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=VOCAB_SIZE, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                          projection_dim=768, bos_token_id=49406, eos_token_id=49407)


def _vae() -> AutoencoderKL:
    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2)


def random_sd15() -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_clip_l()), tokenizer=clip_tokenizer(),
        unet=UNet2DConditionModel(**UNET_CONFIGS["random-sd-1.5"]),
        scheduler=PNDMScheduler(**SD_SCHEDULER, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def random_sdxl() -> StableDiffusionXLPipeline:
    big_g = CLIPTextConfig(vocab_size=VOCAB_SIZE, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                           num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu",
                           projection_dim=1280, bos_token_id=49406, eos_token_id=49407)
    return StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_clip_l()), tokenizer=clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(big_g), tokenizer_2=clip_tokenizer("!"),
        unet=UNet2DConditionModel(**UNET_CONFIGS["random-sdxl"]),
        scheduler=EulerDiscreteScheduler(**SD_SCHEDULER, steps_offset=1, timestep_spacing="leading"),
        force_zeros_for_empty_prompt=True, add_watermarker=False)


BUILDERS = {"random-sd-1.5": random_sd15, "random-sdxl": random_sdxl}


def build_full_size(name: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """Build the named full-size random pipeline directly on ``device`` in ``dtype``."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.device(device):
        torch.manual_seed(seed)
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            pipe = BUILDERS[name]()
        finally:
            torch.set_default_dtype(default)
    pipe.set_progress_bar_config(disable=True)
    return pipe
