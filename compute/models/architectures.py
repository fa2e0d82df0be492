"""Model architectures: how each kind of pipeline is loaded, encodes prompts and is called. Add an architecture
here only.

An architecture turns prompts into per-row conditioning (``Conditioning``) and back into pipeline keyword arguments,
so the generation code can batch rows with different prompts, seeds and swapped layers through one unmodified pipeline.
"""

from dataclasses import dataclass, field

import diffusers
import torch


@dataclass
class Conditioning:
    """Text conditioning of one prompt: ``cond`` (1, T, D) is the text embedding the UNet receives (SD's
    cross-attention reads it as is; DeepFloyd IF's UNet projects it first, see ``tokens.layer_text``); ``extras`` are
    per-row pipeline inputs that must follow the prompt (e.g. SD-XL's pooled embedding)."""

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
            (true when text enters only through cross-attention).
        load_kwargs: keyword arguments of ``from_pretrained`` (components to leave out).
        vae_scale: image pixels per UNet sample, per side, of the released checkpoints (1: pixel space).
        text_projections: the key and value projections of each layer that read the text.
        edit_note: what the paper reports about LocoEdit on this architecture, recorded with and printed for such edits.
        takes_latents: whether the pipeline accepts initial noise (``latents=``); DeepFloyd IF's draws its own from
            the generators it is given.
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
        return Conditioning(pipe.encode_prompt(prompt, device, 1, False)[0])

    def encode_negative(self, pipe) -> Conditioning:
        """The unconditional (empty-prompt) inputs of classifier-free guidance, as the pipeline makes them."""
        device = pipe._execution_device
        if self.name == "sdxl":
            _, uncond, _, uncond_pooled = pipe.encode_prompt("", device=device, num_images_per_prompt=1,
                                                             do_classifier_free_guidance=True)
            return Conditioning(uncond, {"negative_pooled_prompt_embeds": uncond_pooled})
        if self.name == "if":
            return Conditioning(pipe.encode_prompt("", True, 1, device, clean_caption=False)[1])
        return Conditioning(pipe.encode_prompt("", device, 1, True)[1])

    def call_kwargs(self, rows: list[Conditioning], uncond: Conditioning) -> dict[str, torch.Tensor]:
        """Pipeline keyword arguments for a batch whose i-th sample is conditioned on ``rows[i]``."""
        kwargs = {"prompt_embeds": torch.cat([r.cond for r in rows]),
                  "negative_prompt_embeds": uncond.cond.expand(len(rows), -1, -1)}
        for key in rows[0].extras:
            kwargs[key] = torch.cat([r.extras[key] for r in rows])
        for key, value in uncond.extras.items():
            kwargs[key] = value.expand(len(rows), *value.shape[1:])
        return kwargs


_SD_NOTE = "cross-attention input of the conditional rows swapped; unconditional rows untouched"

ARCHITECTURES = {f.name: f for f in (
    Architecture("sd1", "StableDiffusionPipeline", _SD_NOTE,
           load_kwargs=(("safety_checker", None), ("requires_safety_checker", False))),
    Architecture("sd2", "StableDiffusionPipeline", _SD_NOTE,
           load_kwargs=(("safety_checker", None), ("requires_safety_checker", False))),
    Architecture("sdxl", "StableDiffusionXLPipeline",
           _SD_NOTE + "; pooled text embedding and time ids kept from the original prompt",
           target_equals_all_layers=False, load_kwargs=(("add_watermarker", False),)),
    # The UNet projects the T5 embedding (encoder_hid_proj) before its attentions: the swap feeds them the projected
    # target. Its attention-pooled embedding enters the time embedding (addition_embed_type "text") like SD-XL's pooled.
    Architecture("if", "IFPipeline",
           "projected text (after the UNet's encoder_hid_proj) read by add_k_proj/add_v_proj of the conditional rows "
           "swapped; unconditional rows untouched; pooled text embedding in the time embedding kept from the original "
           "prompt", target_equals_all_layers=False, vae_scale=1, text_projections=("add_k_proj", "add_v_proj"),
           takes_latents=False,
           edit_note="the paper reports that LocoEdit fails on DeepFloyd IF: its T5 text encoder is bidirectional, "
                     "so the last subject token does not carry the concept alone",
           load_kwargs=(("safety_checker", None), ("feature_extractor", None), ("watermarker", None),
                        ("requires_safety_checker", False))),
)}


def architecture_of_pipeline(class_name: str, unet_config: dict) -> Architecture | None:
    """The architecture of a saved pipeline, from its class name and UNet config; None when unsupported."""
    if class_name == "StableDiffusionXLPipeline":
        return ARCHITECTURES["sdxl"]
    if class_name == "IFPipeline":
        return ARCHITECTURES["if"]
    if class_name == "StableDiffusionPipeline":
        sd2 = unet_config.get("use_linear_projection") or unet_config.get("cross_attention_dim") == 1024
        return ARCHITECTURES["sd2" if sd2 else "sd1"]
    return None
