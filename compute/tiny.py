"""Built-in offline models: random weights, the real UNet block topologies at tiny widths.

Each builder is deterministic in its seed and does not touch the global RNG. The text encoders use the real CLIP BPE
tokenizer, so token positions (last subject token, end-of-text, padding) behave as in the released checkpoints.
"""

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from .tokenizer import VOCAB_SIZE, clip_tokenizer

TEXT_WIDTH = 32
SD_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
SD_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
SD_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


def _text_config(**overrides) -> CLIPTextConfig:
    config = dict(vocab_size=VOCAB_SIZE, hidden_size=TEXT_WIDTH, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                  pad_token_id=1, projection_dim=TEXT_WIDTH)
    config.update(overrides)
    return CLIPTextConfig(**config)


def _vae() -> AutoencoderKL:
    # Three blocks: 4x spatial compression, so a 64x64 image has a 16x16 latent (three UNet downsamplings to 2x2).
    return AutoencoderKL(block_out_channels=(16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=8,
                         layers_per_block=1, sample_size=64)


def _sd_unet_config(**overrides) -> dict:
    config = dict(sample_size=16, in_channels=4, out_channels=4, down_block_types=SD_DOWN, up_block_types=SD_UP,
                  block_out_channels=(32, 64, 64, 64), layers_per_block=2, cross_attention_dim=TEXT_WIDTH,
                  attention_head_dim=8, norm_num_groups=16)
    config.update(overrides)
    return config


_TIME_DIM = 8
UNET_CONFIGS = {
    "tiny-sd1": _sd_unet_config(),
    "tiny-sd2": _sd_unet_config(use_linear_projection=True, attention_head_dim=(2, 4, 4, 4), upcast_attention=True),
    "tiny-sdxl": dict(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(2, 4, 8), use_linear_projection=True,
        cross_attention_dim=2 * TEXT_WIDTH, addition_embed_type="text_time", addition_time_embed_dim=_TIME_DIM,
        projection_class_embeddings_input_dim=6 * _TIME_DIM + TEXT_WIDTH, norm_num_groups=16),
}


def tiny_sd1() -> StableDiffusionPipeline:
    """SD-1.5 layout: 16 cross-attention layers, conv projections, epsilon prediction, PNDM."""
    return StableDiffusionPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config()), tokenizer=clip_tokenizer(),
        unet=UNet2DConditionModel(**UNET_CONFIGS["tiny-sd1"]),
        scheduler=PNDMScheduler(**SD_SCHEDULER, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def tiny_sd2() -> StableDiffusionPipeline:
    """SD-2.x layout: linear projections, per-block head counts, upcast attention, v-prediction, DDIM."""
    return StableDiffusionPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(hidden_act="gelu")), tokenizer=clip_tokenizer("!"),
        unet=UNet2DConditionModel(**UNET_CONFIGS["tiny-sd2"]),
        scheduler=DDIMScheduler(**SD_SCHEDULER, prediction_type="v_prediction", clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def tiny_sdxl() -> StableDiffusionXLPipeline:
    """SD-XL base layout: transformer depths [1, 2, 10] -> 70 cross-attention layers, two text encoders whose
    penultimate states are concatenated, pooled embedding and time ids through the added time embedding."""
    return StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config()), tokenizer=clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(hidden_act="gelu")), tokenizer_2=clip_tokenizer("!"),
        unet=UNet2DConditionModel(**UNET_CONFIGS["tiny-sdxl"]),
        scheduler=EulerDiscreteScheduler(**SD_SCHEDULER, steps_offset=1, timestep_spacing="leading"),
        force_zeros_for_empty_prompt=True, add_watermarker=False)


BUILDERS = {"tiny-sd1": tiny_sd1, "tiny-sd2": tiny_sd2, "tiny-sdxl": tiny_sdxl}


def build_tiny(name: str, seed: int = 0):
    """Build the named tiny pipeline with weights drawn from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = BUILDERS[name]()
    pipe.set_progress_bar_config(disable=True)
    return pipe
