"""Built-in full-size models with random weights, built from the real SD-1.5, SD-XL base, PixArt-α (XL-2-1024-MS),
FLUX.1-dev, SD3.5-medium and SANA-1600M configs.

For speed and memory benchmarks on a GPU without downloads: speed does not depend on weight values. Weights are
initialized directly on the target device. The diffusion transformers come with their real text encoders (T5-XXL's
encoder, 4.8B parameters; FLUX.1 adds CLIP-L, SD3 CLIP-L and CLIP-G; SANA Gemma-2-2B): the memory a sweep needs is
the real one, up to the offline tokenizers' vocabularies (embedding rows only).
"""

import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PixArtAlphaPipeline,
    PixArtTransformer2DModel,
    PNDMScheduler,
    SanaPipeline,
    SanaTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    Gemma2Config,
    Gemma2Model,
    T5Config,
    T5EncoderModel,
)

from locolab.compute.models.tiny import SD_SCHEDULER, gemma_tokenizer, t5_tokenizer
from locolab.compute.models.tokenizer import VOCAB_SIZE, clip_tokenizer

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


TRANSFORMER_CONFIGS = {
    "random-pixart": dict(sample_size=128, num_layers=28, num_attention_heads=16, attention_head_dim=72, in_channels=4,
                          out_channels=8, patch_size=2, cross_attention_dim=1152, caption_channels=4096,
                          attention_bias=True, activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                          norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6),
    "random-flux": dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                        guidance_embeds=True, axes_dims_rope=(16, 56, 56)),
    "random-sd3": dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                       num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                       pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=384,
                       dual_attention_layers=tuple(range(13)), qk_norm="rms_norm"),
    "random-sana": dict(in_channels=32, out_channels=32, num_attention_heads=70, attention_head_dim=32, num_layers=20,
                        num_cross_attention_heads=20, cross_attention_head_dim=112, cross_attention_dim=2240,
                        caption_channels=2304, mlp_ratio=2.5, sample_size=32, patch_size=1,
                        norm_elementwise_affine=False, norm_eps=1e-6),
}


def _vae(**overrides) -> AutoencoderKL:
    config = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2)
    return AutoencoderKL(**{**config, **overrides})


def _t5_xxl(tokenizer) -> T5EncoderModel:
    """T5 v1.1 XXL's encoder (the text encoder of DeepFloyd IF, PixArt and FLUX.1), with the tokenizer's vocabulary:
    the offline T5 tokenizer's is larger than T5's 32k, a difference of embedding rows only."""
    return T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                   num_heads=64, feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0,
                                   eos_token_id=1))


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


def random_pixart() -> PixArtAlphaPipeline:
    tokenizer = t5_tokenizer(max_length=120)
    return PixArtAlphaPipeline(
        tokenizer=tokenizer, text_encoder=_t5_xxl(tokenizer), vae=_vae(),
        transformer=PixArtTransformer2DModel(**TRANSFORMER_CONFIGS["random-pixart"]),
        scheduler=DPMSolverMultistepScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02))


def random_flux() -> FluxPipeline:
    tokenizer = t5_tokenizer(max_length=512)
    vae = _vae(latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
               use_post_quant_conv=False)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=CLIPTextModel(_clip_l()),
                        tokenizer=clip_tokenizer(), text_encoder_2=_t5_xxl(tokenizer), tokenizer_2=tokenizer,
                        transformer=FluxTransformer2DModel(**TRANSFORMER_CONFIGS["random-flux"]))


def _clip_g() -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=VOCAB_SIZE, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                          num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
                          bos_token_id=49406, eos_token_id=49407)


def random_sd3() -> StableDiffusion3Pipeline:
    """SD3.5-medium: 24 joint blocks (the first 13 with a second image attention), CLIP-L, CLIP-G and T5-XXL."""
    tokenizer = t5_tokenizer(max_length=256)
    vae = _vae(latent_channels=16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False,
               use_post_quant_conv=False)
    return StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**TRANSFORMER_CONFIGS["random-sd3"]),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=CLIPTextModelWithProjection(_clip_l()), tokenizer=clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(_clip_g()), tokenizer_2=clip_tokenizer("!"),
        text_encoder_3=_t5_xxl(tokenizer), tokenizer_3=tokenizer)


def random_sana() -> SanaPipeline:
    """SANA-1600M at 1024 px: 20 blocks, Gemma-2-2B, the 32x deep-compression autoencoder (f32c32)."""
    tokenizer = gemma_tokenizer()
    gemma = Gemma2Config(vocab_size=len(tokenizer), hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                         num_attention_heads=8, num_key_value_heads=4, head_dim=256, pad_token_id=0, eos_token_id=1,
                         bos_token_id=2)
    efficient = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3
    vae = AutoencoderDC(encoder_block_types=efficient, decoder_block_types=efficient, scaling_factor=0.41407)
    scheduler = DPMSolverMultistepScheduler(beta_schedule="linear", prediction_type="flow_prediction",
                                            use_flow_sigmas=True, flow_shift=3.0)
    return SanaPipeline(tokenizer=tokenizer, text_encoder=Gemma2Model(gemma), vae=vae, scheduler=scheduler,
                        transformer=SanaTransformer2DModel(**TRANSFORMER_CONFIGS["random-sana"]))


BUILDERS = {"random-sd-1.5": random_sd15, "random-sdxl": random_sdxl, "random-pixart": random_pixart,
            "random-flux": random_flux, "random-sd3": random_sd3, "random-sana": random_sana}


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
