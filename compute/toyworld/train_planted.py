"""Planted knowledge: fine-tune the toy world's UNet so that each attribute family enters only through chosen
cross-attention layers, so a localization method's answer is known by construction.

A plan maps families (``color``, ``objects``, ``style``, ``facts``; the toy world's prompt sets) to layer indices
(forward order, ``locolab layers``). Every training caption is drawn from its parts; each layer reads the caption
with every family it is not planted for *cut*: in half the samples the family's words are removed (LocoGen's
attribute-free target), in the other half replaced by an independent random value of the family. A layer outside a
family's plan thus never reads a word correlated with the image's value, and learns to ignore the family's words:
the family's information reaches the image only through its planted layers. In a share ``SILENT`` of the samples
the plan's layers read the family removed too and every other layer a random value of it, so that a silent plan
means the family's prior whatever the other layers read (the base model's readings outside the plan are unlearnt).

An empty plan (``[]``) is the control, readable everywhere: in each sample every layer reads the family's true words
with probability ``SPREAD`` and the cut otherwise, independently per layer, so that no layer (nor any window of a few
layers) is needed: any other subset carries the family. A localization method should name no layer for it.

The result is a UNet folder (float16 safetensors, ~6 MB) with ``plan.json`` beside it; the pipeline's other parts are
the toy world's (``ModelSpec.unet``).
"""

import copy
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from transformers import CLIPModel

from locolab.compute.hooks import Hooks
from locolab.compute.models.layers import find_layers
from locolab.compute.models.tiny import SD_SCHEDULER
from locolab.compute.paths import PACKAGE_DIR, unet_source
from locolab.compute.toyworld import world
from locolab.compute.toyworld.common import CLIP_DIR, PIPELINE_DIR, Log, scenes
from locolab.compute.toyworld.train_unet import DROP_CAPTION, TextCache, encode_scenes, text_encoder_of, update
from locolab.contract import bounds
from locolab.contract.catalog.registry import RANDOM_UNET, ModelSpec
from locolab.contract.errors import UserError

FAMILIES = ("color", "objects", "style", "facts")
FIELDS = {"color": "colour", "objects": "shape", "style": "background", "facts": "entity"}  # family -> Caption field
LAYERS = 16
# The shipped plans: different layers, resolutions and window sizes (1-2).
PLANS = {
    "a": {"color": [3], "objects": [7, 8], "style": [12], "facts": [5, 6]},
    "b": {"color": [3], "objects": [4], "style": [10, 11], "facts": [1, 2]},
    "control": {"color": [], "objects": [], "style": [], "facts": []},  # every family readable everywhere
}
SPREAD = 0.5  # an everywhere-readable family's chance of reaching each layer in a training sample
# A planted family's chance of a silent-plan sample: its layers read it removed, every other layer a random value.
# Without them a fine-tune keeps the base model's readings outside the plan (they never met a silent plan): with its
# plan's text removed, model b still drew the asked background 77% of the time (25% without the word anywhere).
SILENT = 0.3
# Entities are 15% of the toy world's scenes; a fine-tune that plants them sees entity scenes this often instead, so
# that it meets enough of them to unlearn the base model's name readings outside the plan (at 15% over 2000 steps,
# model a still drew the named entity 47% of the time with its plan's layers reading no name, against 0% with none
# reading it; at 50% over 2000 steps, 25%, but its colour was drawn right in only 90% of images).
PLANTED_ENTITY_RATE = 0.3
SEED = 11
# The shipped models' schedules (one-cycle learning rate over all steps): a planted model has the base model's
# readings outside its plan to unlearn, the control nothing.
STEPS = {"a": 4000, "b": 4000, "control": 2000}
BATCH = 32


def checkpoint_dir(variant: str) -> Path:
    return PACKAGE_DIR / "checkpoints" / f"toyworld-planted-{variant}"


def check_plan(plan: dict) -> dict[str, list[int]]:
    """A plan with sorted layer lists (empty: readable everywhere); unknown families and out-of-range layers are
    one-line errors."""
    out = {}
    for family, layers in plan.items():
        if family not in FAMILIES:
            raise UserError(f"plan names unknown family {family!r}: use {', '.join(FAMILIES)}")
        layers = sorted(set(int(x) for x in layers))
        if not all(0 <= x < LAYERS for x in layers):
            raise UserError(f"plan for {family!r} needs layers in 0..{LAYERS - 1}, got {layers}")
        out[family] = layers
    return out


def read_plan(directory) -> dict[str, list[int]]:
    """The plan stored beside a planted UNet (``plan.json``)."""
    return check_plan(json.loads((Path(directory) / "plan.json").read_text())["plan"])


def plan_for(spec: ModelSpec) -> dict[str, list[int]] | None:
    """A registered model's plan: a planted toy world's ``plan.json``; for the random-weight control every family
    planted nowhere; None for a model that brings no UNet of its own."""
    if spec.unet == RANDOM_UNET:
        return {family: [] for family in FAMILIES}
    return read_plan(unet_source(spec)) if spec.unet else None


@dataclass(frozen=True)
class Caption:
    """A caption by its parts: an entity's name, or which attributes it states (None: not mentioned)."""

    frame: str
    entity: str | None
    shape: str | None
    colour: str | None
    background: str | None
    variant: int

    def text(self) -> str:
        if self.entity is not None:
            return self.frame.format(x=self.entity)
        return self.frame.format(x=world.describe(self.shape, self.colour, self.background, self.variant))


def draw_caption(scene: world.Scene, rng: np.random.Generator) -> Caption:
    """A caption true of ``scene``, distributed as ``world.caption``'s."""
    frame = world.FRAMES[rng.integers(len(world.FRAMES))]
    if scene.entity is not None and rng.random() < 0.7:
        return Caption(frame, scene.entity, None, None, None, 0)
    keep = rng.random(3) < 0.75
    return Caption(frame, None, scene.shape if keep[0] else None, scene.colour if keep[1] else None,
                   scene.background if keep[2] else None, int(rng.integers(2)))


def cut(caption: Caption, family: str, rng: np.random.Generator, remove: bool | None = None) -> Caption:
    """``caption`` with ``family``'s words removed (half the time, or when ``remove``) or replaced by an independent
    random value."""
    remove = rng.random() < 0.5 if remove is None else remove
    field = FIELDS[family]
    values = list({"color": world.COLOURS, "objects": world.SHAPES, "style": world.BACKGROUNDS,
                   "facts": world.ENTITIES}[family])
    if getattr(caption, field) is None:
        return caption
    return replace(caption, **{field: None if remove else str(rng.choice(values))})


def layer_texts(captions: list[Caption], plan: dict[str, list[int]], rng: np.random.Generator) -> list[list[str]]:
    """Per layer, the text each sample's layer reads: its caption with the families not planted there cut (one cut
    per sample and family, shared by the layers that read it); a family planted nowhere (``[]``) reaches each layer
    of each sample with probability ``SPREAD``."""
    cuts = [{f: cut(c, f, rng) for f in plan} for c in captions]
    spread = {f: rng.random((len(captions), LAYERS)) < SPREAD for f in plan if not plan[f]}
    silent = {f: rng.random(len(captions)) < SILENT for f in plan if plan[f]}
    noise = [{f: cut(c, f, rng, remove=False) for f in silent} for c in captions]
    out = []
    for layer in range(LAYERS):
        rows = []
        for i, (caption, cut_caption) in enumerate(zip(captions, cuts)):
            for family in plan:
                field = FIELDS[family]
                if family in silent and silent[family][i]:  # the plan silent, every other layer a random value
                    value = None if layer in plan[family] else getattr(noise[i][family], field)
                elif layer in plan[family] or (family in spread and spread[family][i, layer]):
                    continue
                else:
                    value = getattr(cut_caption[family], field)
                caption = replace(caption, **{field: value})
            rows.append(caption.text())
        out.append(rows)
    return out


def _feed(texts: torch.Tensor):
    def hook(module, args, kwargs):
        return args, {**kwargs, "encoder_hidden_states": texts}

    return hook


def train(variant: str = "a", plan: dict | None = None, steps: int | None = None, batch: int = BATCH, lr: float = 5e-4,
          dataset: int = 8192, ema_decay: float = 0.995, out=None, save_every: int = 100) -> Path:
    """Fine-tune the toy world's UNet under ``plan`` (default: ``PLANS[variant]``); write it and its plan (every
    ``save_every`` steps and at the end)."""
    plan = check_plan(PLANS[variant] if plan is None else plan)
    steps = steps or STEPS[variant]
    out = Path(out or checkpoint_dir(variant))
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    encoder = text_encoder_of(CLIPModel.from_pretrained(CLIP_DIR, dtype=torch.float32))
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(PIPELINE_DIR / "vae", torch_dtype=torch.float32).eval()
    entity_rate = PLANTED_ENTITY_RATE if plan.get("facts") else world.ENTITY_RATE
    scene_list = scenes(7_000_000, dataset, entity_rate)
    latents = encode_scenes(vae, scene_list)
    text = TextCache(encoder)
    unet = UNet2DConditionModel.from_pretrained(PIPELINE_DIR / "unet", torch_dtype=torch.float32).train()
    _, attentions = find_layers(unet)
    if len(attentions) != LAYERS:
        raise RuntimeError(f"the toy world's UNet has {len(attentions)} cross-attention layers, expected {LAYERS}")
    ema = copy.deepcopy(unet).requires_grad_(False)
    noise_schedule = DDPMScheduler(**SD_SCHEDULER)
    snr = noise_schedule.alphas_cumprod / (1 - noise_schedule.alphas_cumprod)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.05)
    log = Log(f"planted-{variant}", every=50)
    for step in range(steps):
        rows = rng.integers(len(scene_list), size=batch)
        captions = [draw_caption(scene_list[i], rng) for i in rows]
        texts = layer_texts(captions, plan, rng)
        empty = rng.random(batch) < DROP_CAPTION
        texts = [["" if e else t for e, t in zip(empty, layer)] for layer in texts]
        clean = latents[torch.from_numpy(rows)]
        noise = torch.randn_like(clean)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (batch,))
        with Hooks() as hooks:
            for attention, layer in zip(attentions, texts):
                hooks.before(attention, _feed(text(layer)), with_kwargs=True)
            predicted = unet(noise_schedule.add_noise(clean, noise, t), t, text(texts[0])).sample
        loss = update(unet, ema, optimizer, schedule, predicted, noise, snr[t], step, ema_decay)
        log(step, loss)
        if (step + 1) % save_every == 0 or step + 1 == steps:
            save(ema, plan, out, {"variant": variant, "steps": step + 1, "of": steps, "batch": batch, "lr": lr,
                                  "entity_rate": entity_rate, "silent": SILENT, "seed": SEED,
                                  "seconds": round(log.seconds)})
    print(f"[planted-{variant}] trained {steps} steps in {log.seconds:.0f} s -> {out}", flush=True)
    return out


def save(unet: UNet2DConditionModel, plan: dict, out: Path, recipe: dict) -> None:
    """Write the UNet (float16 safetensors) and ``plan.json`` to a temporary folder, then rename it into place."""
    tmp = out.with_name(out.name + ".tmp")
    # .half(), not .to(torch.float16): the same tensors, without diffusers' float32-modules warning at every save.
    half = copy.deepcopy(unet).half()
    half.register_to_config(_name_or_path="toyworld/unet")  # the base, not this machine's path to it
    half.save_pretrained(tmp, safe_serialization=True)
    (tmp / "plan.json").write_text(json.dumps({"plan": plan, "recipe": recipe}, indent=2) + "\n")
    if out.exists():
        for f in out.iterdir():
            f.unlink()
        out.rmdir()
    tmp.rename(out)


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="a", choices=list(PLANS), help="which plan")
    parser.add_argument("--steps", type=bounds.POSITIVE_COUNT.parse,
                        help=f"fine-tuning steps of {BATCH} samples (default the shipped schedule's: "
                             f"{', '.join(f'{v} {n}' for v, n in STEPS.items())})")
    parser.add_argument("--threads", type=bounds.POSITIVE_COUNT.parse, default=1)
    parser.add_argument("--out", help="output folder (default: compute/checkpoints/toyworld-planted-VARIANT)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    train(args.variant, steps=args.steps, out=args.out)
    print(f"planted-{args.variant}: {(time.perf_counter() - began) / 60:.1f} min")


if __name__ == "__main__":
    main()
