"""Resolve a model name (registry name, local pipeline directory or hub id) into a ready ``Model``."""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import diffusers
import torch
import transformers

from locolab.compute.models.architectures import ARCHITECTURES, Architecture, architecture_of_pipeline
from locolab.compute.models.full_size import BUILDERS as FULL_SIZE
from locolab.compute.models.full_size import build_full_size
from locolab.compute.models.layers import Layer, find_layers, find_transformer_layers
from locolab.compute.models.memory import place
from locolab.compute.models.tiny import build_tiny, random_unet
from locolab.compute.paths import model_source, unet_source
from locolab.contract.catalog.registry import MODELS, RANDOM_UNET, ModelSpec
from locolab.contract.errors import UserError
from locolab.contract.names import OFFLOADS

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Model:
    """A loaded pipeline with its architecture, defaults and text-reading attention layers in forward order.

    Attributes:
        name: what the model is called in artifacts (a registry name, a directory, a hub id).
        spec: its generation defaults.
        arch: its pipeline architecture (how prompts are encoded and the pipeline is called).
        pipe: the diffusers pipeline.
        layers: the text-reading attention layers (LocoGen's layers), in forward order.
        attentions: the attention module of each layer, in the same order.
        offload: the pipeline's weights wait on the CPU and move to the accelerator while they run (model or group
            offload, ``load_model(offload=...)``).
    """

    name: str
    spec: ModelSpec
    arch: Architecture
    pipe: object
    layers: list[Layer]
    attentions: list[torch.nn.Module]
    offload: bool = False

    @classmethod
    def from_pipeline(cls, pipe, name: str | None = None, resolution: int | None = None) -> "Model":
        """Wrap a diffusers pipeline already in memory (SD-1.x/2.x, SD-XL, DeepFloyd IF stage I, PixArt-α/Σ,
        FLUX.1).

        Usage: ``model = Model.from_pipeline(StableDiffusionPipeline.from_pretrained(path), name="sd-1.4")``

        Args:
            pipe: the pipeline; its progress bar is turned off (LocoLab draws its own).
            name: what to call the model in results (default: the pipeline's class name).
            resolution: default image side (default: the denoiser's sample size times the VAE's scale).
        """
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        arch = architecture_of_pipeline(type(pipe).__name__, dict(getattr(denoiser, "config", {})))
        if arch is None:
            raise UserError(f"a {type(pipe).__name__} is not supported: use {SUPPORTED}")
        resolution = resolution or default_resolution(dict(denoiser.config), latent_scale(pipe))
        pipe.set_progress_bar_config(disable=True)
        return _wrap(ModelSpec(name or type(pipe).__name__, arch.name, None, resolution), pipe,
                     offload=getattr(pipe, "_offload_device", None) is not None or _group_offloaded(denoiser))

    @property
    def denoiser(self) -> torch.nn.Module:
        """The denoising network: the UNet or the diffusion transformer."""
        return getattr(self.pipe, self.arch.denoiser)

    @property
    def device(self) -> torch.device:
        """Where the denoiser runs (with offload: the accelerator, though its weights wait on the CPU)."""
        return self.pipe._execution_device if self.offload else self.denoiser.device

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype

    @property
    def latent_scale(self) -> int:
        return latent_scale(self.pipe)


SUPPORTED = "an SD-1.x, SD-2.x, SD-XL, DeepFloyd IF stage I, PixArt-α/Σ, SANA, FLUX.1 or SD3 pipeline"


def _group_offloaded(module) -> bool:
    from diffusers.hooks.group_offloading import _get_group_onload_device

    try:
        _get_group_onload_device(module)
    except ValueError:
        return False
    return True


def default_resolution(config: dict, scale: int) -> int:
    """The default image side of a denoiser config: its sample size (FLUX's pipeline: 128) times the VAE's scale."""
    return config.get("sample_size", 128) * scale


def _wrap(spec: ModelSpec, pipe, offload: bool = False) -> Model:
    """A ``Model`` of a ready pipeline: its text-reading attention layers found by a probe pass."""
    arch = ARCHITECTURES[spec.arch]
    denoiser = getattr(pipe, arch.denoiser)
    latent = spec.resolution // latent_scale(pipe)
    if arch.denoiser == "unet":
        layers, attentions = find_layers(denoiser, latent)
    else:
        layers, attentions = find_transformer_layers(denoiser, arch.sites(denoiser), arch.probe_inputs(denoiser),
                                                     arch.token_side(denoiser, latent))
    if not layers:
        raise UserError(f"{spec.name!r} has no text-reading attention layers: unsupported")
    return Model(spec.name, spec, arch, pipe, layers, attentions, offload)


def latent_scale(pipe) -> int:
    """Image pixels per UNet sample, per side: the VAE's downscaling, 1 for a pixel-space UNet (DeepFloyd IF)."""
    return getattr(pipe, "vae_scale_factor", 1)


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda, else mps, else cpu; a named device must exist on this machine.

    Raises:
        UserError: not a device name, or a device this machine lacks.
    """
    if device != "auto":
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError):
            raise UserError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {device!r}: this machine has no CUDA device; use --device cpu (or auto)")
        if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
            raise UserError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                            f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        if chosen.type == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"device {device!r}: MPS is not available here; use --device cpu (or auto)")
        if chosen.type not in ("cpu", "cuda", "mps"):
            raise UserError(f"device {device!r} is not supported: use auto, cpu, cuda, cuda:N or mps")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    """``auto`` -> float16 on an accelerator, float32 on the CPU."""
    if dtype == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}: use one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _read_json(path: Path) -> dict:
    """A pipeline's JSON config file, or a one-line error naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path} is not readable JSON ({type(error).__name__}: {str(error).splitlines()[0]}): "
                        "the pipeline folder is damaged; save it again with pipe.save_pretrained(DIR)") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} holds {type(value).__name__}, not a JSON object: the pipeline folder is damaged; "
                        "save it again with pipe.save_pretrained(DIR)")
    return value


def _read_index(source: str) -> tuple[dict, dict]:
    """Read ``model_index.json`` and the denoiser's (UNet's or transformer's) config of a local directory or a hub
    id."""
    if os.path.isdir(source):
        index = Path(source) / "model_index.json"
        if not index.is_file():
            raise UserError(f"{source!r} is not a diffusers pipeline (no model_index.json): "
                            "save one with pipe.save_pretrained(DIR) or pass a registered name")
        configs = [Path(source) / part / "config.json" for part in ("unet", "transformer")]
        found = [path for path in configs if path.is_file()]
        return _read_json(index), _read_json(found[0]) if found else {}
    from huggingface_hub import hf_hub_download
    try:
        index = _read_json(Path(hf_hub_download(source, "model_index.json")))
        part = next((p for p in ("unet", "transformer") if p in index), None)
        unet = _read_json(Path(hf_hub_download(source, f"{part}/config.json"))) if part else {}
    except UserError:
        raise
    except Exception as exc:
        if _hub_offline():
            raise UserError(f"the model hub is offline (HF_HUB_OFFLINE=1) and {source!r} is not in the local cache: "
                            "pass a local pipeline directory instead (--model /path/to/pipeline)") from None
        raise UserError(f"cannot read {source!r} from the model hub ({type(exc).__name__}): "
                        "check the id, or pass a local pipeline directory") from None
    return index, unet


def _spec_for(source: str) -> ModelSpec:
    index, unet = _read_index(source)
    class_name = index.get("_class_name", "?")
    arch = architecture_of_pipeline(class_name, unet)
    if arch is None:
        raise UserError(f"{source!r} is a {class_name}: unsupported pipeline, use {SUPPORTED}")
    config = {"sample_size": 64, **unet} if arch.denoiser == "unet" else unet
    sample_size = config.get("sample_size", 128)
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1:
        raise UserError(f"{source!r}: its {arch.denoiser} config has sample_size {sample_size!r}, not a positive "
                        "integer: the pipeline folder is damaged; save it again with pipe.save_pretrained(DIR)")
    resolution = default_resolution(config, arch.vae_scale)
    return ModelSpec(source, arch.name, source, resolution)


def resolve(name: str) -> ModelSpec:
    """The spec of a registry name, a local pipeline directory or a hub id (read without loading weights)."""
    if name in MODELS:
        return MODELS[name]
    if os.path.isdir(name) or (_HUB_ID.match(name) and not os.path.exists(name)):
        return _spec_for(name)
    raise UserError(f"unknown model {name!r}: use a registered name ({', '.join(MODELS)}), "
                    "a local pipeline directory or a hub id (org/name)")


def load_model(name: str, device: str = "auto", dtype: str = "auto", seed: int = 0, offload: bool | str = "auto",
               fp8: bool = False) -> Model:
    """Load a model for generation and interventions.

    Args:
        name: registry name, local directory written by ``save_pretrained``, or hub id.
        device: ``auto`` (cuda > mps > cpu) or a torch device string.
        dtype: ``auto`` (float16 on accelerators, float32 on CPU), ``float32``, ``float16`` or ``bfloat16``.
        seed: weight seed of built-in tiny models and of a random-weight UNet (``registry.RANDOM_UNET``).
        offload: where the weights wait (``memory.OFFLOADS``): ``auto`` (default: all on the device where they fit,
            else model, else group offload), ``none``, ``model`` (accelerate's model CPU offload: a 12B FLUX.1 in
            bf16 on a 24 GB GPU; True says the same) or ``group`` (diffusers' block-level group offload).
        fp8: store the denoiser's weights in float8, cast per layer (``memory``; images change by the rounding).
    """
    offload = {True: "model", False: "none"}.get(offload, offload)
    if offload not in OFFLOADS:
        raise UserError(f"unknown offload {offload!r}: use one of {', '.join(OFFLOADS)}")
    spec = resolve(name)
    arch = ARCHITECTURES[spec.arch]
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    if spec.name in FULL_SIZE:
        on_device = offload == "none" or (offload == "auto" and torch_device.type != "cuda")
        pipe = build_full_size(spec.name, torch_device if on_device else torch.device("cpu"), torch_dtype, seed=seed)
    elif spec.builtin:
        pipe = build_tiny(spec.name, seed=seed)
    else:
        _read_index(model_source(spec))  # a missing or offline checkpoint fails here, with a one-line reason
        diffusers.utils.logging.disable_progress_bar()  # per-component loading bars drown the sweep's own
        transformers.utils.logging.disable_progress_bar()
        try:
            own = {}
            if unet_source(spec):
                own["unet"] = diffusers.UNet2DConditionModel.from_pretrained(unet_source(spec), dtype=torch_dtype)
            elif spec.unet == RANDOM_UNET:
                own["unet"] = random_unet(Path(model_source(spec)) / "unet", seed)
                if torch_dtype != torch.float32:
                    own["unet"] = own["unet"].to(torch_dtype)
            pipe = arch.pipeline_type().from_pretrained(model_source(spec), dtype=torch_dtype,
                                                        **dict(arch.load_kwargs), **own)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load {model_source(spec)!r}: {str(exc).splitlines()[0]}") from None
        if spec.scheduler != "default":
            pipe.scheduler = getattr(diffusers, spec.scheduler).from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
    if spec.builtin and torch_dtype != torch.float32:
        pipe.to(dtype=torch_dtype)
    placed = place(pipe, torch_device, offload, fp8, arch.denoiser)
    return _wrap(spec, pipe, placed != "none")


def layer_count(name: str) -> int:
    """The number of text-reading attention layers of a model, from its denoiser config alone (no weights loaded)."""
    from diffusers import UNet2DConditionModel

    from locolab.compute.models.layers import is_text_attention
    from locolab.compute.models.tiny import UNET_CONFIGS

    spec = resolve(name)
    if spec.num_layers is not None:
        return spec.num_layers
    config = UNET_CONFIGS[spec.name] if spec.builtin else _read_index(model_source(spec))[1]
    arch = ARCHITECTURES[spec.arch]
    try:
        if arch.denoiser != "unet":
            return arch.site_count(config)
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{name!r}: its {arch.denoiser} config cannot be built ({reason}): the pipeline folder is "
                        "damaged; save it again with pipe.save_pretrained(DIR)") from None
    return sum(1 for module in unet.modules() if is_text_attention(module))
