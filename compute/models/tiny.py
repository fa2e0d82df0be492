"""Built-in offline models: random weights, the real UNet and diffusion-transformer block topologies at tiny widths.

Each builder is deterministic in its seed and does not touch the global RNG. The CLIP text encoders use the real CLIP
BPE tokenizer, so token positions (last subject token, end-of-text, padding) behave as in the released checkpoints;
the T5 encoders (tiny-if, tiny-pixart, tiny-flux) use a T5 tokenizer built from the same vocabulary
(``t5_tokenizer``), tiny-sana's Gemma-2 a Gemma-style one (``gemma_tokenizer``: ``<bos>`` first, no end token).
"""

import json
import math

import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    IFPipeline,
    PixArtAlphaPipeline,
    PixArtSigmaPipeline,
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
from tokenizers import Tokenizer
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    Gemma2Config,
    Gemma2Model,
    PreTrainedTokenizerFast,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

from locolab.compute.models.tokenizer import VOCAB_SIZE, clip_tokenizer

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
    # IF-I-XL's config (channel multipliers 1,2,3,4, three resnets per block, attention at the three lower
    # resolutions -> 22 text-reading attentions) at tiny widths. As there, cross_attention_dim is the last block's
    # width; it must be a multiple of the 32 groups of each attention's text GroupNorm.
    "tiny-if": dict(
        sample_size=64, in_channels=3, out_channels=6, layers_per_block=3, block_out_channels=(8, 16, 24, 32),
        down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
        up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", attention_head_dim=8, cross_attention_dim=32,
        cross_attention_norm="group_norm", encoder_hid_dim=TEXT_WIDTH, encoder_hid_dim_type="text_proj",
        addition_embed_type="text", addition_embed_type_num_heads=4, resnet_time_scale_shift="scale_shift",
        act_fn="gelu", norm_num_groups=8),
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


def t5_tokenizer(max_length: int = 77) -> T5TokenizerFast:
    """A T5 tokenizer (sentencepiece-style unigram: no BOS, ``</s>`` ends each prompt, ``<pad>`` = 0, ``<unk>`` = 2)
    built offline from the CLIP BPE vocabulary, as DeepFloyd's T5 vocabulary is not shipped here.

    A CLIP whole-word token ``word</w>`` becomes the word-initial piece ``▁word``, any other token a
    word-internal piece; single characters exist in both forms, so every Latin-1 word is tokenized without ``<unk>``.
    Scores fall with the token's CLIP id (its merge rank, roughly its frequency), so whole words win over splits.
    ``max_length`` is its ``model_max_length`` (FLUX.1's text length, ``architectures.text_tokens``).
    """
    pieces: dict[str, int] = {"▁": 0}
    for token, _ in sorted(clip_tokenizer().get_vocab().items(), key=lambda item: item[1]):
        word = token.endswith("</w>")
        text = token.removesuffix("</w>")
        if not text or not all(32 < ord(c) < 127 or 160 < ord(c) < 256 for c in text):  # specials, byte stand-ins
            continue
        forms = ["▁" + text, text] if len(text) == 1 else ["▁" + text if word else text]
        for piece in forms:
            pieces.setdefault(piece, len(pieces))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -math.log(rank + 2)) for p, rank in pieces.items()]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=max_length)


GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")  # Gemma's ids 0-3


def gemma_tokenizer(max_length: int = 300) -> PreTrainedTokenizerFast:
    """A Gemma-style tokenizer: ``t5_tokenizer``'s pieces behind Gemma's special ids (``<pad>`` 0, ``<eos>`` 1,
    ``<bos>`` 2, ``<unk>`` 3), ``<bos>`` before every text and no end token, as SANA's Gemma-2 reads prompts."""
    spec = json.loads(t5_tokenizer().backend_tokenizer.to_str())
    spec["model"]["vocab"] = [[token, 0.0] for token in GEMMA_SPECIALS] + spec["model"]["vocab"][3:]
    spec["model"]["unk_id"] = GEMMA_SPECIALS.index("<unk>")
    spec["added_tokens"] = [{"id": i, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for i, token in enumerate(GEMMA_SPECIALS)]
    bos = {"SpecialToken": {"id": "<bos>", "type_id": 0}}
    spec["post_processor"] = {"type": "TemplateProcessing", "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                                       {"Sequence": {"id": "B", "type_id": 0}}],
                              "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), bos_token="<bos>",
                                   eos_token="<eos>", pad_token="<pad>", unk_token="<unk>", model_max_length=max_length)


def _t5_encoder(tokenizer: T5TokenizerFast, width: int = TEXT_WIDTH) -> T5EncoderModel:
    """A two-layer T5 v1.1-style encoder (gated GELU, relative positions: reads any sequence length)."""
    return T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=width, d_kv=8, d_ff=2 * width, num_layers=2,
                                   num_heads=4, feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0,
                                   eos_token_id=1))


def tiny_if() -> IFPipeline:
    """DeepFloyd IF stage I layout: pixel-space UNet with 22 added-key/value attentions reading a projected T5
    embedding, pooled text in the time embedding, learned-range variance with dynamic thresholding (DDPM)."""
    tokenizer = t5_tokenizer()
    encoder = _t5_encoder(tokenizer)
    scheduler = DDPMScheduler(variance_type="learned_range", beta_schedule="squaredcos_cap_v2",
                              prediction_type="epsilon", thresholding=True, dynamic_thresholding_ratio=0.95,
                              sample_max_value=1.5)
    return IFPipeline(tokenizer=tokenizer, text_encoder=encoder, unet=UNet2DConditionModel(**UNET_CONFIGS["tiny-if"]),
                      scheduler=scheduler, safety_checker=None, feature_extractor=None, watermarker=None,
                      requires_safety_checker=False)


# The transformers' configs: the real block counts and layouts at tiny widths. The latent side is the tiny VAE's 16 at
# 64 px; PixArt patchifies 2x2 (8x8 tokens), FLUX's pipeline packs 2x2 latents into one token (8x8 tokens).
TRANSFORMER_CONFIGS = {
    # PixArt-XL-2: 28 blocks, each self-attention, cross-attention (attn2) on the projected T5 caption, feed-forward;
    # learned sigma (8 output channels); adaLN-single time embedding.
    "tiny-pixart": dict(sample_size=16, num_layers=28, num_attention_heads=2, attention_head_dim=8, in_channels=4,
                        out_channels=8, patch_size=2, cross_attention_dim=16, caption_channels=TEXT_WIDTH,
                        attention_bias=True, activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                        norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6),
    # FLUX.1-dev: 19 double-stream then 38 single-stream blocks, rotary positions over (text, row, column) axes,
    # guidance embedding; 16 latent channels packed 2x2 (64 input channels) become 4 x 4 here.
    "tiny-flux": dict(patch_size=1, in_channels=16, num_layers=19, num_single_layers=38, attention_head_dim=16,
                      num_attention_heads=2, joint_attention_dim=TEXT_WIDTH, pooled_projection_dim=TEXT_WIDTH,
                      guidance_embeds=True, axes_dims_rope=(4, 6, 6)),
    # SD3.5-medium: 24 joint blocks, the first 13 with a second (image-only) attention, RMS q/k norms; the text
    # sequence is 77 CLIP positions (both encoders side by side, zero-padded) then T5's.
    "tiny-sd3": dict(sample_size=16, patch_size=2, in_channels=4, num_layers=24, attention_head_dim=8,
                     num_attention_heads=2, joint_attention_dim=2 * TEXT_WIDTH, caption_projection_dim=16,
                     pooled_projection_dim=2 * TEXT_WIDTH, out_channels=4, pos_embed_max_size=16,
                     dual_attention_layers=tuple(range(13)), qk_norm="rms_norm"),
    # SANA-1600M: 20 blocks, each a linear self-attention, a cross-attention (attn2) on the Gemma-2 caption after the
    # transformer's caption projection and RMS norm, and a gated conv feed-forward; 1x1 patches of a 32x latent
    # (DC-AE: 32 channels, 8 here).
    "tiny-sana": dict(sample_size=16, num_layers=20, num_attention_heads=2, attention_head_dim=8, in_channels=8,
                      out_channels=8, patch_size=1, num_cross_attention_heads=2, cross_attention_head_dim=8,
                      cross_attention_dim=16, caption_channels=TEXT_WIDTH, mlp_ratio=2.5,
                      norm_elementwise_affine=False, norm_eps=1e-6),
}


def _pixart(pipeline_class):
    tokenizer = t5_tokenizer()
    return pipeline_class(
        tokenizer=tokenizer, text_encoder=_t5_encoder(tokenizer), vae=_vae(),
        transformer=PixArtTransformer2DModel(**TRANSFORMER_CONFIGS["tiny-pixart"]),
        scheduler=DPMSolverMultistepScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02))


def tiny_pixart() -> PixArtAlphaPipeline:
    """PixArt-α layout: 28 transformer blocks whose attn2 reads the T5 caption (120 tokens, padding masked) after the
    transformer's caption projection; DPM-Solver++."""
    return _pixart(PixArtAlphaPipeline)


def tiny_pixart_sigma() -> PixArtSigmaPipeline:
    """PixArt-Σ: PixArt-α's transformer layout, a 300-token caption."""
    return _pixart(PixArtSigmaPipeline)


def tiny_flux() -> FluxPipeline:
    """FLUX.1-dev layout: 19 double-stream blocks (joint attention, text through add_q/k/v_proj) then 38 single-
    stream blocks over the concatenated [text; image] sequence; T5 sequence (512 tokens, no mask), pooled CLIP in the
    time embedding, guidance embedding instead of a classifier-free batch; flow-matching Euler with dynamic shift."""
    tokenizer = t5_tokenizer()
    vae = AutoencoderKL(block_out_channels=(16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=8,
                        layers_per_block=1, sample_size=64, scaling_factor=0.3611, shift_factor=0.1159,
                        use_quant_conv=False, use_post_quant_conv=False)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=CLIPTextModel(_text_config()),
                        tokenizer=clip_tokenizer(), text_encoder_2=_t5_encoder(tokenizer), tokenizer_2=tokenizer,
                        transformer=FluxTransformer2DModel(**TRANSFORMER_CONFIGS["tiny-flux"]))


def tiny_sd3() -> StableDiffusion3Pipeline:
    """SD3.5-medium layout: 24 joint-attention blocks over [image; text] (text: two CLIPs then T5), pooled CLIPs in
    the time embedding, a classifier-free batch; flow-matching Euler."""
    tokenizer = t5_tokenizer()
    vae = AutoencoderKL(block_out_channels=(16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=8,
                        layers_per_block=1, sample_size=64, scaling_factor=1.5305, shift_factor=0.0609,
                        use_quant_conv=False, use_post_quant_conv=False)
    return StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**TRANSFORMER_CONFIGS["tiny-sd3"]),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=CLIPTextModelWithProjection(_text_config()), tokenizer=clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(hidden_act="gelu")), tokenizer_2=clip_tokenizer("!"),
        text_encoder_3=_t5_encoder(tokenizer, 2 * TEXT_WIDTH), tokenizer_3=tokenizer)


def tiny_sana() -> SanaPipeline:
    """SANA-1600M layout: 20 blocks whose attn2 reads the Gemma-2 caption (the prompt behind the pipeline's system
    instruction, 300 positions, padding masked) after caption projection and RMS norm; a deep-compression
    autoencoder (4x here, 32x released); flow-matching DPM-Solver++."""
    tokenizer = gemma_tokenizer()
    encoder = Gemma2Model(Gemma2Config(vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                       pad_token_id=0, eos_token_id=1, bos_token_id=2, sliding_window=64))
    vae = AutoencoderDC(in_channels=3, latent_channels=8, attention_head_dim=8, encoder_block_out_channels=(8, 16, 16),
                        decoder_block_out_channels=(8, 16, 16), encoder_layers_per_block=(1, 1, 1),
                        decoder_layers_per_block=(1, 1, 1), encoder_qkv_multiscales=((), (), ()),
                        decoder_qkv_multiscales=((), (), ()), scaling_factor=0.41407)
    scheduler = DPMSolverMultistepScheduler(beta_schedule="linear", prediction_type="flow_prediction",
                                            use_flow_sigmas=True, flow_shift=3.0)
    return SanaPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=vae, scheduler=scheduler,
                        transformer=SanaTransformer2DModel(**TRANSFORMER_CONFIGS["tiny-sana"]))


BUILDERS = {"tiny-sd1": tiny_sd1, "tiny-sd2": tiny_sd2, "tiny-sdxl": tiny_sdxl, "tiny-if": tiny_if,
            "tiny-pixart": tiny_pixart, "tiny-pixart-sigma": tiny_pixart_sigma, "tiny-flux": tiny_flux,
            "tiny-sd3": tiny_sd3, "tiny-sana": tiny_sana}


def random_unet(folder, seed: int = 0):
    """A UNet of the config in ``folder`` (its weights are not read) with weights drawn from ``seed``, leaving the
    global RNG as it was: the toy world's random-weight control (``registry.RANDOM_UNET``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder))


def build_tiny(name: str, seed: int = 0):
    """Build the named tiny pipeline with weights drawn from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = BUILDERS[name]()
    pipe.set_progress_bar_config(disable=True)
    return pipe
