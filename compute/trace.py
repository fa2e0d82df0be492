"""Causal tracing (the predecessor baseline, ROME-style): corrupt the subject's input word embeddings with Gaussian
noise, restore one site's state from the clean run, and see how much of the attribute comes back.

UNet sites are restored inside one batch: the clean, corrupted and restored rows of one seed start from the same
latents, and a forward hook copies the clean row's output at the site into each restored row (both halves of
classifier-free guidance) at every denoising step, which is exactly "restore from the clean run at every step".
Text-encoder sites are restored while encoding: encoder layer i's output at the last subject token is taken from the
clean encoding, and the image is generated from the resulting text embedding.
"""

import re
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers.models.attention import FeedForward
from diffusers.models.resnet import ResnetBlock2D

from locolab.compute.generation import Case, generate_batch, make_encoder
from locolab.compute.hooks import Hooks
from locolab.compute.models.architectures import Conditioning
from locolab.compute.models.layers import call_order, forward_order
from locolab.compute.models.loading import Model
from locolab.compute.plan import PlannedCase, Unit, build_trace_plan
from locolab.compute.settings import Settings
from locolab.compute.sweep.config import SweepConfig
from locolab.compute.tokens import subject_position
from locolab.contract.names import CROSS_ATTENTION, TEXT_ENCODER, TRACE_TEXT, TRACE_UNET

_BLOCK = re.compile(r"(down|mid|up)_blocks?")
_TEXT_LAYER = re.compile(r"(^|\.)encoder\.(layers|block)\.\d+$")  # CLIP: encoder.layers.N; T5: encoder.block.N
_FIND = {
    "self-attention": lambda name, module: name.endswith(".attn1"),
    "feed-forward": lambda name, module: isinstance(module, FeedForward),
    "resnet": lambda name, module: isinstance(module, ResnetBlock2D),
}


@dataclass(frozen=True)
class Site:
    """A state that tracing restores: a module's output, indexed in forward order within its component."""

    component: str
    index: int
    path: str
    block: str | None
    resolution: int | None
    module: torch.nn.Module

    def row(self) -> dict:
        """The site as a ``layers`` table row."""
        return {"component": self.component, "index": self.index, "path": self.path, "block": self.block,
                "resolution": self.resolution}


def unet_sites(model: Model, component: str) -> list[Site]:
    """The denoiser's sites of ``component`` in forward order. Cross-attention sites are the model's LocoGen layers
    (a transformer's text-reading attentions); the others are found, like them, by a probe forward pass (a
    transformer's at its one token resolution)."""
    if component == CROSS_ATTENTION:
        return [Site(component, layer.index, layer.path, layer.block, layer.resolution, module)
                for layer, module in zip(model.layers, model.attentions)]
    denoiser = model.denoiser
    names = {module: name for name, module in denoiser.named_modules() if _FIND[component](name, module)}
    latent = model.spec.resolution // model.latent_scale
    if model.arch.denoiser != "unet":
        side = model.arch.token_side(denoiser, latent)
        order = call_order(denoiser, names, model.arch.probe_inputs(denoiser))
        return [Site(component, index, names[module], None, side, module) for index, module in enumerate(order)]
    sites = []
    for index, (module, resolution) in enumerate(forward_order(denoiser, names, latent)):
        block = _BLOCK.search(names[module])
        sites.append(Site(component, index, names[module], block and block.group(1), resolution, module))
    return sites


def _text_encoders(model: Model) -> list[tuple[str, torch.nn.Module, object]]:
    pipe = model.pipe
    return [(f"text_encoder{suffix}", getattr(pipe, f"text_encoder{suffix}"), getattr(pipe, f"tokenizer{suffix}"))
            for suffix in ("", "_2") if getattr(pipe, f"text_encoder{suffix}", None) is not None]


def text_sites(model: Model) -> list[Site]:
    """The text-encoder layers (CLIP or T5 blocks) in forward order (SD-XL: the first encoder's, then the second's)."""
    layers = [(f"{name}.{path}", layer) for name, encoder, _ in _text_encoders(model)
              for path, layer in encoder.named_modules() if _TEXT_LAYER.search(path)]
    return [Site(TEXT_ENCODER, index, path, path.split(".")[0], None, layer)
            for index, (path, layer) in enumerate(layers)]


def word_embedding(encoder: torch.nn.Module) -> torch.nn.Embedding:
    """The token-embedding module a text encoder calls. T5 ties ``shared`` (its ``get_input_embeddings``) to
    ``encoder.embed_tokens`` but calls only the latter, so a hook on ``shared`` would never fire."""
    stack = getattr(encoder, "encoder", None)
    return getattr(stack, "embed_tokens", None) or encoder.get_input_embeddings()


def embedding_std(model: Model, subject: str) -> dict[str, float]:
    """Per text encoder, the std of the subject's own token embeddings (all their entries): the unit of the noise
    scale. Trained encoders differ wildly in the scale of rarely used rows, so the whole matrix's std can be far
    smaller than the subject's (the toy world's mini-CLIP: noise of 3x the matrix std left most concepts intact)."""
    stds = {}
    for name, encoder, tokenizer in _text_encoders(model):
        ids = tokenizer(subject, add_special_tokens=False).input_ids
        stds[name] = word_embedding(encoder).weight[ids].float().std().item()
    return stds


def subject_positions(tokenizer, prompt: str, subject: str) -> list[int]:
    """Positions of all of the subject's tokens in the prompt (its last occurrence)."""
    last = subject_position(tokenizer, prompt, subject)
    count = len(tokenizer(subject, add_special_tokens=False).input_ids)
    return list(range(last - count + 1, last + 1))


@contextmanager
def corrupt_subject(model: Model, prompt: str, subject: str, scale: float, seed: int):
    """Within: encoding ``prompt`` adds Gaussian noise, ``scale`` times the subject's embedding std
    (``embedding_std``), to the subject tokens' input word embeddings of every text encoder. The noise comes from a
    generator seeded with ``seed``, so every encoding inside gets the same noise."""
    stds = embedding_std(model, subject)
    with Hooks() as hooks:
        for name, encoder, tokenizer in _text_encoders(model):
            positions = subject_positions(tokenizer, prompt, subject)
            embedding = word_embedding(encoder)
            generator = torch.Generator().manual_seed(seed)
            noise = torch.randn(len(positions), embedding.embedding_dim, generator=generator) * scale * stds[name]

            def hook(module, args, output, positions=positions, noise=noise):
                output = output.clone()
                output[:, positions] += noise.to(output)
                return output

            hooks.after(embedding, hook)
        yield


@contextmanager
def restore_token(layer: torch.nn.Module, position: int, clean: torch.Tensor):
    """Within: ``layer``'s output at ``position`` is replaced by ``clean`` (its clean output there)."""
    def hook(module, args, output):
        hidden = (output[0] if isinstance(output, tuple) else output).clone()
        hidden[:, position] = clean.to(hidden)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    # Prepended, so output recorders (e.g. SD-XL's penultimate hidden state) see the restored state.
    with Hooks() as hooks:
        hooks.after(layer, hook, prepend=True)
        yield


def clean_states(model: Model, prompt: str, layers: Sequence[torch.nn.Module]) -> list[torch.Tensor]:
    """The output of each of ``layers`` (text-encoder layers) while encoding ``prompt`` cleanly, (T, D) each."""
    states: dict[torch.nn.Module, torch.Tensor] = {}

    def hook(module, args, output):
        states[module] = (output[0] if isinstance(output, tuple) else output)[0].detach().clone()

    with Hooks() as hooks, torch.no_grad():
        for layer in layers:
            hooks.after(layer, hook)
        model.arch.encode(model.pipe, prompt)
    return [states[layer] for layer in layers]


def _restore_hook(mask: torch.Tensor, source: torch.Tensor):
    batch = mask.shape[0]
    index = torch.where(mask, source, torch.arange(batch))

    def restore(output: torch.Tensor) -> torch.Tensor:
        if output.shape[0] % batch or output.shape[0] // batch not in (1, 2):
            raise RuntimeError(f"restore prepared for {batch} samples, but the site gave {output.shape[0]} rows")
        rows = torch.cat([index + k * batch for k in range(output.shape[0] // batch)])
        return output[rows.to(output.device)]

    def hook(module, args, output):
        # A joint attention returns its image and text outputs: both are restored.
        return tuple(map(restore, output)) if isinstance(output, tuple) else restore(output)

    return hook


@contextmanager
def restore_sites(modules: Sequence[torch.nn.Module], restored: torch.Tensor, source: Sequence[int]):
    """Restore chosen samples' outputs at chosen modules from another sample of the batch, at every call.

    Args:
        modules: the sites (denoiser modules whose output is a tensor, or a tuple of tensors, batch first).
        restored: (S, B) bool; ``restored[s, i]`` makes sample ``i``'s output at ``modules[s]`` a copy of sample
            ``source[i]``'s. With classifier-free guidance the pipeline runs ``2B`` rows [unconditional,
            conditional]; both rows of the sample are copied. Modules with no restored sample get no hook.
        source: (B,) the clean sample of each sample.

    Hooks are removed on exit, also when the body raises.
    """
    if restored.shape != (len(modules), len(source)):
        raise ValueError(f"restored has shape {tuple(restored.shape)}, expected ({len(modules)}, {len(source)})")
    source = torch.as_tensor(source)
    with Hooks() as hooks:
        for module, mask in zip(modules, restored):
            if mask.any():
                hooks.after(module, _restore_hook(mask, source))
        yield


class TraceRenderer:
    """Generates batches of planned trace cases (a ``sweep.Render``).

    Args:
        model: the loaded model.
        settings: sampling settings.
        sites: the UNet sites per component (``unet_sites``), by the index in ``PlannedCase.site``.
        text: the text-encoder sites (``text_sites``).
    """

    def __init__(self, model: Model, settings: Settings, sites: dict[str, list[Site]], text: list[Site]):
        self.model, self.settings, self.sites, self.text = model, settings, sites, text
        self.encoder = make_encoder(model)
        self.cache: dict[tuple, Conditioning] = {}

    def conditioning(self, case: PlannedCase) -> Conditioning:
        """The case's text conditioning: clean, corrupted, or corrupted with one text-encoder site restored."""
        if case.kind == "original":
            return self.encoder(case.prompt)
        site = self.text[case.site] if case.method == TRACE_TEXT and case.kind == "restored" else None
        key = (case.prompt, case.concept, case.noise, case.seed, site and site.index)
        if key not in self.cache:
            with ExitStack() as stack, torch.no_grad():
                if site is not None:
                    tokenizer = getattr(self.model.pipe, site.path.split(".")[0].replace("text_encoder", "tokenizer"))
                    position = subject_position(tokenizer, case.prompt, case.concept)
                    clean = clean_states(self.model, case.prompt, [site.module])[0][position]
                    stack.enter_context(restore_token(site.module, position, clean))
                stack.enter_context(corrupt_subject(self.model, case.prompt, case.concept, case.noise, case.seed))
                self.cache[key] = self.model.arch.encode(self.model.pipe, case.prompt)
        return self.cache[key]

    def __call__(self, batch: list[PlannedCase]) -> np.ndarray:
        conds, seeds = [self.conditioning(c) for c in batch], [c.seed for c in batch]
        unet_restored = [c.method == TRACE_UNET and c.kind == "restored" for c in batch]
        clean = {(c.prompt, c.seed): i for i, c in enumerate(batch) if c.kind == "original"}
        for case, restores in zip(batch, unet_restored):
            if restores and (case.prompt, case.seed) not in clean:
                # The clean run of this seed rides along in the batch as an extra row.
                clean[case.prompt, case.seed] = len(conds)
                conds.append(self.encoder(case.prompt))
                seeds.append(case.seed)
        source = [clean.get((c.prompt, c.seed), i) for i, c in enumerate(batch)] + list(range(len(batch), len(conds)))
        with ExitStack() as stack:
            for component, sites in self.sites.items():
                restored = torch.zeros(len(sites), len(conds), dtype=torch.bool)
                for i, case in enumerate(batch):
                    if unet_restored[i] and case.component == component:
                        restored[case.site, i] = True
                stack.enter_context(restore_sites([s.module for s in sites], restored, source))
            images = generate_batch(self.model, [Case(c, s) for c, s in zip(conds, seeds)], self.settings,
                                    self.encoder)
        return images[:len(batch)]


@dataclass
class TracePlan:
    """A causal trace of a config's prompts on a loaded model: its sites, units and what the run records.

    Attributes:
        sites: the UNet sites per traced component (``unet_sites``).
        text: the text-encoder sites (``text_sites``), empty when not traced.
        counts: site count per (method, component), as ``plan.build_trace_plan`` takes them.
        units: every work unit of the trace.
        details: recorded in the run's ``config_json`` (the noise unit per concept).
    """

    sites: dict[str, list[Site]]
    text: list[Site]
    counts: dict[tuple[str, str], int]
    units: list[Unit]
    details: dict = field(default_factory=dict)

    @property
    def layer_rows(self) -> list[dict]:
        """Every site as a ``layers`` table row."""
        return [site.row() for found in [*self.sites.values(), self.text] for site in found]


def plan_trace(model: Model, config: SweepConfig, settings: Settings) -> TracePlan:
    """Find the sites ``config.trace`` names on ``model`` and plan the trace of every prompt of the config."""
    sites = {component: unet_sites(model, component) for component in config.trace.components}
    text = text_sites(model) if config.trace.text_encoder else []
    counts = {(TRACE_UNET, component): len(found) for component, found in sites.items()}
    if text:
        counts[TRACE_TEXT, TEXT_ENCODER] = len(text)
    stds = {c.name: embedding_std(model, c.name) for f in config.families for c in f.concepts}
    return TracePlan(sites, text, counts, build_trace_plan(config, settings, counts), {"embedding_std": stds})
