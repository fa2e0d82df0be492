"""Model architectures: how each kind of pipeline is loaded, encodes prompts and is called, and where its denoiser
reads the text. Add an architecture here only.

An architecture turns prompts into per-row conditioning (``Conditioning``) and back into pipeline keyword arguments,
so the generation code can batch rows with different prompts, seeds and swapped layers through one unmodified pipeline.

Two kinds of denoiser (``Architecture.denoiser``, the pipeline attribute):

- UNets (``pipe.unet``: SD-1.x/2.x/XL, DeepFloyd IF stage I). The text-reading sites are the attentions with text
  keys and values (``attn2``; IF: ``add_k_proj``/``add_v_proj``), found by ``layers.find_layers``.
- Diffusion transformers (``pipe.transformer``). Cross-attention DiTs (PixArt-α/Σ, SANA) read the caption in every
  block's ``attn2``, after the transformer's caption projection (SANA: and an RMS norm), with the tokenizer's padding
  mask as an additive bias: text enters as an embedding, exactly as in a UNet, and LocoGen's swap is unchanged (the
  mask is swapped with the text). Joint-attention DiTs (FLUX.1, SD3) keep a text *stream* beside the image stream:
  each joint block attends over [text; image] tokens, text projected by ``add_q/k/v_proj``, and updates both streams
  (FLUX's single-stream blocks then attend over the concatenated sequence with one set of projections). What a joint
  block reads depends on the image tokens of every earlier block and on the timestep, so the knowledge-free prompt's
  text at a block exists only inside a generation of that prompt: see ``JOINT_SWAP``.
"""

import inspect
from dataclasses import dataclass, field

import diffusers
import torch

from locolab.contract.names import ALL_LAYERS, TARGET

# Kinds of text-reading site (``Layer.block`` of a transformer's sites; a UNet's sites are down/mid/up).
CROSS = "cross"    # an attn2 reading the (projected) caption: PixArt
DOUBLE = "double"  # FLUX double-stream block: joint attention, text through add_k_proj/add_v_proj
SINGLE = "single"  # FLUX single-stream block: one attention over the concatenated [text; image] sequence
JOINT = "joint"    # SD3 joint block (MM-DiT), as FLUX's double-stream blocks

JOINT_SWAP = (
    "joint attention: in each chosen block the text tokens the attention reads (double-stream/joint blocks: the "
    "modulated text stream that add_q/k/v_proj project; single-stream blocks: the text rows of the block's "
    "normalized [text; image] sequence) are, for the conditional rows, those of the same block at the same step of "
    "the knowledge-free prompt's own generation (same seed and settings, a companion row in the same batch), as in "
    "the DiT paper's code; the block's text residual stream is not replaced: it continues from the original prompt's "
    "state, plus that block's attention update (computed from the swapped text), so blocks outside the set read the "
    "original prompt's text stream, as LocoGen's unswapped layers read the original embedding")


@dataclass
class Conditioning:
    """Text conditioning of one prompt: ``cond`` (1, T, D) is the text embedding the denoiser receives (SD's
    cross-attention reads it as is; DeepFloyd IF's UNet and the DiTs project it first, see ``tokens.layer_text``);
    ``extras`` are per-row pipeline inputs that must follow the prompt (e.g. SD-XL's pooled embedding, PixArt's text
    attention mask)."""

    cond: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Architecture:
    """One pipeline architecture (the kind of pipeline, not an attribute family such as style).

    Attributes:
        name: short id used in the registry and artifacts.
        pipeline_class: the diffusers pipeline class name.
        swap_note: what a LocoGen swap changes and keeps, recorded in every generation's metadata.
        target_equals_all_layers: whether swapping every layer reproduces the plain pipeline on the target prompt
            (true when text enters only through the swapped sites).
        load_kwargs: keyword arguments of ``from_pretrained`` (components to leave out).
        vae_scale: image pixels per latent sample, per side, of the released checkpoints (1: pixel space).
        text_projections: the key and value projections of each layer that read the text.
        edit_note: what the paper reports about LocoEdit on this architecture, recorded with and printed for such edits.
        takes_latents: whether the pipeline accepts initial noise as (B, C, h, w) ``latents=``; DeepFloyd IF's
            draws its own, and FLUX.1 packs its own, from the CPU generators it is given.
        denoiser: the pipeline attribute of the denoising network (``unet`` or ``transformer``).
        stream: the sites read a text stream that evolves with the image (joint attention, ``JOINT_SWAP``), not a
            fixed embedding.
        cfg: the pipeline runs [unconditional, conditional] rows for classifier-free guidance (FLUX.1 is
            guidance-distilled: one conditional row per image, the guidance scale enters as an embedding).
        text_mask: prompts carry a padding mask (``prompt_attention_mask``) that the sites apply; it is swapped with
            the text.
        call_options: fixed pipeline keyword arguments.
        pooled: the ``Conditioning.extras`` keys that carry a pooled text embedding (swapped only on request).
        sequence_tokenizer: the pipeline attribute of the tokenizer whose positions index the text the sites read.
        segments: where the sequence the sites read has several parts from different tokenizers (SD3: both CLIPs'
            77 positions, then T5's), their tokenizers' pipeline attributes in order; empty: one part.
        patch: image tokens per latent sample, per side, beyond the transformer's own patch size (FLUX packs 2x2).
        topk_swaps_pooled: the DiT paper's code also swaps the pooled text embedding in its top-k intervention on
            this architecture (FLUX.1: ``replace_pooled_prompt_embeds=True``).
    """

    name: str
    pipeline_class: str
    swap_note: str
    target_equals_all_layers: bool = True
    load_kwargs: tuple[tuple[str, object], ...] = ()
    vae_scale: int = 8
    text_projections: tuple[str, str] = ("to_k", "to_v")
    edit_note: str = ""
    takes_latents: bool = True
    denoiser: str = "unet"
    stream: bool = False
    cfg: bool = True
    text_mask: bool = False
    call_options: tuple[tuple[str, object], ...] = ()
    pooled: tuple[str, ...] = ()
    sequence_tokenizer: str = "tokenizer"
    segments: tuple[str, ...] = ()
    patch: int = 1
    topk_swaps_pooled: bool = False

    @property
    def reference(self) -> str:
        """The reference LocoGen's drops are normalized by: the plain target prompt where swapping every layer
        reproduces it, else the all-layers swap (the target prompt also changes SD-XL's pooled embedding and IF's
        text-time embedding, which a swap keeps, so no window could reach it)."""
        return TARGET if self.target_equals_all_layers else ALL_LAYERS

    def pipeline_type(self):
        return getattr(diffusers, self.pipeline_class)

    def encode(self, pipe, prompt: str) -> Conditioning:
        """The conditional inputs of one prompt, encoded alone so they do not depend on batch company."""
        device = pipe._execution_device
        if self.name == "sdxl":
            cond, _, pooled, _ = pipe.encode_prompt(prompt, device=device, num_images_per_prompt=1,
                                                    do_classifier_free_guidance=False)
            return Conditioning(cond, {"pooled_prompt_embeds": pooled})
        if self.name == "if":
            return Conditioning(pipe.encode_prompt(prompt, False, 1, device, clean_caption=False)[0])
        if self.text_mask:
            extra = {"complex_human_instruction": instruction(pipe)} if self.name == "sana" else {}
            cond, mask, _, _ = pipe.encode_prompt(prompt, False, device=device, clean_caption=False, **extra)
            return Conditioning(cond, {"prompt_attention_mask": mask})
        if self.name == "flux":
            cond, pooled, _ = pipe.encode_prompt(prompt, None, device=device, max_sequence_length=text_tokens(pipe))
            return Conditioning(cond, {"pooled_prompt_embeds": pooled})
        if self.name == "sd3":
            tokens = text_tokens(pipe)
            cond, _, pooled, _ = pipe.encode_prompt(prompt, None, None, device=device, max_sequence_length=tokens,
                                                    do_classifier_free_guidance=False)
            return Conditioning(cond, {"pooled_prompt_embeds": pooled})
        return Conditioning(pipe.encode_prompt(prompt, device, 1, False)[0])

    def encode_negative(self, pipe) -> Conditioning | None:
        """The unconditional (empty-prompt) inputs of classifier-free guidance, as the pipeline makes them; None for
        a pipeline without them."""
        device = pipe._execution_device
        if not self.cfg:
            return None
        if self.name == "sdxl":
            _, uncond, _, uncond_pooled = pipe.encode_prompt("", device=device, num_images_per_prompt=1,
                                                             do_classifier_free_guidance=True)
            return Conditioning(uncond, {"negative_pooled_prompt_embeds": uncond_pooled})
        if self.name == "if":
            return Conditioning(pipe.encode_prompt("", True, 1, device, clean_caption=False)[1])
        if self.text_mask:
            _, _, uncond, mask = pipe.encode_prompt("", True, negative_prompt="", device=device, clean_caption=False)
            return Conditioning(uncond, {"negative_prompt_attention_mask": mask})
        if self.name == "sd3":
            _, uncond, _, uncond_pooled = pipe.encode_prompt("", None, None, device=device, negative_prompt="",
                                                             do_classifier_free_guidance=True,
                                                             max_sequence_length=text_tokens(pipe))
            return Conditioning(uncond, {"negative_pooled_prompt_embeds": uncond_pooled})
        return Conditioning(pipe.encode_prompt("", device, 1, True)[1])

    def call_kwargs(self, rows: list[Conditioning], uncond: Conditioning | None) -> dict[str, torch.Tensor]:
        """Pipeline keyword arguments for a batch whose i-th sample is conditioned on ``rows[i]``."""
        kwargs = {"prompt_embeds": torch.cat([r.cond for r in rows])}
        for key in rows[0].extras:
            kwargs[key] = torch.cat([r.extras[key] for r in rows])
        if uncond is not None:
            kwargs["negative_prompt_embeds"] = uncond.cond.expand(len(rows), -1, -1)
            for key, value in uncond.extras.items():
                kwargs[key] = value.expand(len(rows), *value.shape[1:])
        return {**kwargs, **dict(self.call_options)}

    def plain_options(self, pipe) -> dict:
        """Keyword arguments that make a plain call of the pipeline with a prompt string compute what LocoLab's
        generation computes with the same settings: PixArt without resolution binning or caption cleaning, FLUX.1
        with ``text_tokens``."""
        if self.stream:
            return {"max_sequence_length": text_tokens(pipe)}
        return {"use_resolution_binning": False, "clean_caption": False} if self.text_mask else {}

    def attention_text(self, denoiser, text: torch.Tensor) -> torch.Tensor:
        """``text`` (B, T, D), a text-encoder embedding, as the denoiser's text-reading sites receive it.

        DeepFloyd IF's UNet projects its text input (``encoder_hid_proj``) inside its forward, before any attention;
        PixArt's transformer projects the caption (``caption_projection``); SD-1.x/2.x/XL feed it unchanged.
        Joint-attention DiTs read a text stream instead (``stream``), which no function of the embedding alone gives.
        """
        if self.stream:
            raise ValueError(f"{self.name}'s joint attention reads a text stream, not a projected embedding")
        param = next(denoiser.parameters())
        text = text.to(device=param.device, dtype=param.dtype)
        if self.denoiser == "unet":
            return denoiser.process_encoder_hidden_states(text, {})
        text = denoiser.caption_projection(text).view(text.shape[0], -1, denoiser.config.cross_attention_dim)
        return denoiser.caption_norm(text) if self.name == "sana" else text

    def mask_bias(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A (B, T) keep-mask of the text as the cross-attention reads it: the additive (B, 1, T) bias the PixArt
        transformer makes of it in its forward (0 = keep, -10000 = discard)."""
        return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)

    def sites(self, denoiser) -> list[tuple[str, torch.nn.Module, str]]:
        """A transformer's text-reading attention sites as (module path, module, kind), in block order."""
        if self.name == "flux":
            blocks = [("transformer_blocks", DOUBLE), ("single_transformer_blocks", SINGLE)]
            return [(f"{name}.{i}.attn", b.attn, kind) for name, kind in blocks
                    for i, b in enumerate(getattr(denoiser, name))]
        if self.name == "sd3":
            return [(f"transformer_blocks.{i}.attn", b.attn, JOINT) for i, b in enumerate(denoiser.transformer_blocks)]
        return [(f"transformer_blocks.{i}.attn2", b.attn2, CROSS) for i, b in enumerate(denoiser.transformer_blocks)
                if getattr(b, "attn2", None) is not None]

    def site_count(self, config: dict) -> int:
        """The number of text-reading sites of a transformer, from its config alone."""
        if self.name == "flux":
            return config["num_layers"] + config["num_single_layers"]
        return config["num_layers"]

    def probe_inputs(self, denoiser, rows: int = 1, latent_side: int | None = None, text_tokens: int = 8) -> dict:
        """Keyword arguments of one forward call of a transformer with zero inputs: by default a small one (2x2 image
        tokens, 8 text tokens) that finds the order in which it calls its sites; at a sweep's latent size and text
        length, what one denoising step of ``rows`` rows costs (``batching``)."""
        config, param = denoiser.config, next(denoiser.parameters())

        def zeros(*shape):
            return torch.zeros(*shape, dtype=param.dtype, device=param.device)

        step = torch.ones(rows, device=param.device)
        side = latent_side or 2 * config.patch_size * self.patch
        if self.name == "flux":
            tokens = (side // self.patch) ** 2
            inputs = {"hidden_states": zeros(rows, tokens, config.in_channels),
                      "encoder_hidden_states": zeros(rows, text_tokens, config.joint_attention_dim),
                      "pooled_projections": zeros(rows, config.pooled_projection_dim), "timestep": step,
                      "img_ids": zeros(tokens, 3), "txt_ids": zeros(text_tokens, 3)}
            return {**inputs, "guidance": step} if config.guidance_embeds else inputs
        inputs = {"hidden_states": zeros(rows, config.in_channels, side, side), "timestep": step}
        if self.name == "sd3":
            return {**inputs, "encoder_hidden_states": zeros(rows, text_tokens, config.joint_attention_dim),
                    "pooled_projections": zeros(rows, config.pooled_projection_dim)}
        inputs["encoder_hidden_states"] = zeros(rows, text_tokens, config.caption_channels)
        if self.name == "sana":
            return inputs
        extra = ({"resolution": zeros(rows, 2), "aspect_ratio": zeros(rows, 1)} if denoiser.use_additional_conditions
                 else {"resolution": None, "aspect_ratio": None})
        return {**inputs, "added_cond_kwargs": extra}

    def token_side(self, denoiser, latent_side: int) -> int:
        """Image tokens per side of a transformer whose latent is ``latent_side`` samples wide."""
        return latent_side // (getattr(denoiser.config, "patch_size", 1) * self.patch)


def instruction(pipe) -> list[str]:
    """SANA's system instruction (``complex_human_instruction``, the pipeline's default): every prompt is encoded
    behind it, and its caption keeps the first token and the last 299 of the result (``tokens.InstructedTokenizer``)."""
    return inspect.signature(type(pipe).__call__).parameters["complex_human_instruction"].default


def text_tokens(pipe) -> int:
    """The T5 sequence length of FLUX.1 and SD3: its tokenizer's ``model_max_length``, at most the pipeline's default
    (FLUX.1: 512; SD3: 256), so a tiny test model's short tokenizer gives a short sequence."""
    t5 = getattr(pipe, "tokenizer_3", None) or pipe.tokenizer_2
    return min(256 if hasattr(pipe, "tokenizer_3") else 512, t5.model_max_length)


_SD_NOTE = "cross-attention input of the conditional rows swapped; unconditional rows untouched"
_DIT_CROSS_NOTE = ("projected caption (after the transformer's caption_projection{norm}) read by each chosen block's "
                   "attn2 in the conditional rows swapped, with its padding mask; unconditional rows untouched")
_T5_EDIT_NOTE = ("{model} reads a bidirectional T5 encoder, the reason the LocoGen paper gives for LocoEdit failing on "
                 "DeepFloyd IF: the last subject token does not carry the concept alone")

# Text enters PixArt only through attn2 (the time embedding sees the timestep and, at 1024 px, the image size): swapping
# every block gives the plain pipeline on the target. Resolution binning is off: images are generated at the size
# asked for, not at the nearest trained aspect ratio resized back. The empty negative prompt comes as embeddings.
_PIXART = dict(swap_note=_DIT_CROSS_NOTE.format(norm=""), denoiser="transformer", text_mask=True,
               call_options=(("use_resolution_binning", False), ("negative_prompt", None)),
               edit_note=_T5_EDIT_NOTE.format(model="PixArt"))

ARCHITECTURES = {f.name: f for f in (
    Architecture("sd1", "StableDiffusionPipeline", _SD_NOTE,
                 load_kwargs=(("safety_checker", None), ("requires_safety_checker", False))),
    Architecture("sd2", "StableDiffusionPipeline", _SD_NOTE,
                 load_kwargs=(("safety_checker", None), ("requires_safety_checker", False))),
    Architecture("sdxl", "StableDiffusionXLPipeline",
                 _SD_NOTE + "; pooled text embedding and time ids kept from the original prompt",
                 target_equals_all_layers=False, load_kwargs=(("add_watermarker", False),),
                 pooled=("pooled_prompt_embeds",)),
    # The UNet projects the T5 embedding (encoder_hid_proj) before its attentions: the swap feeds them the projected
    # target. Its attention-pooled embedding enters the time embedding (addition_embed_type "text") like SD-XL's pooled.
    Architecture("if", "IFPipeline",
                 "projected text (after the UNet's encoder_hid_proj) read by add_k_proj/add_v_proj of the "
                 "conditional rows swapped; unconditional rows untouched; pooled text embedding in the time embedding "
                 "kept from the original prompt", target_equals_all_layers=False, vae_scale=1,
                 text_projections=("add_k_proj", "add_v_proj"), takes_latents=False,
                 edit_note="the paper reports that LocoEdit fails on DeepFloyd IF: its T5 text encoder is "
                           "bidirectional, so the last subject token does not carry the concept alone",
                 load_kwargs=(("safety_checker", None), ("feature_extractor", None), ("watermarker", None),
                              ("requires_safety_checker", False))),
    Architecture("pixart-alpha", "PixArtAlphaPipeline", **_PIXART),
    Architecture("pixart-sigma", "PixArtSigmaPipeline", **_PIXART),
    # SANA: PixArt's cross-attention layout behind a Gemma-2 decoder (causal, as CLIP) reading the prompt after a
    # system instruction; text enters only through attn2, so swapping every block reproduces the target.
    Architecture("sana", "SanaPipeline", _DIT_CROSS_NOTE.format(norm=" and caption_norm"), denoiser="transformer",
                 text_mask=True, vae_scale=32,
                 call_options=(("use_resolution_binning", False), ("negative_prompt", None))),
    Architecture("flux", "FluxPipeline",
                 JOINT_SWAP + "; no classifier-free batch (guidance distilled into an embedding); the pooled CLIP "
                 "embedding in the time embedding kept from the original prompt unless swap_pooled",
                 target_equals_all_layers=False, denoiser="transformer", stream=True, cfg=False,
                 text_projections=("add_k_proj", "add_v_proj"), pooled=("pooled_prompt_embeds",),
                 sequence_tokenizer="tokenizer_2", patch=2, topk_swaps_pooled=True, takes_latents=False,
                 edit_note="FLUX reads a bidirectional T5 encoder through a text stream that every double-stream "
                           "block updates; keys are read at each edited block's text input during generation"),
    # SD3/3.5 (MM-DiT): every block is joint like FLUX's double-stream ones; the text sequence is both CLIPs' hidden
    # states side by side (77 tokens, zero-padded to T5's width) followed by T5's; a classifier-free batch.
    Architecture("sd3", "StableDiffusion3Pipeline",
                 JOINT_SWAP + "; unconditional rows untouched; the pooled CLIP embeddings in the time embedding kept "
                 "from the original prompt unless swap_pooled", target_equals_all_layers=False, denoiser="transformer",
                 stream=True, text_projections=("add_k_proj", "add_v_proj"), pooled=("pooled_prompt_embeds",),
                 segments=("tokenizer", "tokenizer_3"),
                 edit_note="SD3 reads the concept twice, in both CLIPs' part of its text sequence and in the "
                           "bidirectional T5's part: keys are read at the concept's last token in each part, at each "
                           "edited block's text input during generation; T5 spreads part of the concept over earlier "
                           "tokens, where no key reaches"),
)}


def architecture_of_pipeline(class_name: str, unet_config: dict) -> Architecture | None:
    """The architecture of a saved pipeline, from its class name and denoiser config; None when unsupported."""
    if class_name == "StableDiffusionXLPipeline":
        return ARCHITECTURES["sdxl"]
    if class_name == "IFPipeline":
        return ARCHITECTURES["if"]
    if class_name == "StableDiffusionPipeline":
        sd2 = unet_config.get("use_linear_projection") or unet_config.get("cross_attention_dim") == 1024
        return ARCHITECTURES["sd2" if sd2 else "sd1"]
    return next((a for a in ARCHITECTURES.values() if a.denoiser != "unet" and a.pipeline_class == class_name), None)
