"""The toy world's quality gates: generate every (shape, colour, background) combination with several seeds through
the normal loading and generation path, read colour, background and shape with the exact pixel detectors
(``detect``) and, for comparison, with the mini-CLIP (zero-shot over the four names). Entities are checked the same
way against their fixed looks.
"""

import json
import time
from pathlib import Path

import numpy as np
import torch

from locolab.compute.generation import Case, generate
from locolab.compute.models.loading import load_model, resolve
from locolab.compute.scoring import load_scorer
from locolab.compute.settings import Settings
from locolab.compute.toyworld import detect, world
from locolab.compute.toyworld.common import CLIP_DIR
from locolab.compute.toyworld.train_planted import plan_for

GATES = {"colour": 0.90, "background": 0.80, "shape": 0.60}
# A planted toy world (train_planted.py) is gated on what the exact pixel detectors read, combinations and entities.
PLANTED_GATES = {"colour": 0.95, "background": 0.95, "shape": 0.95}
# A planted family is confined to its plan when, with the plan's layers reading the prompt without its words, it is
# drawn at most this much more often than with its words nowhere.
CONFINED_MARGIN = 0.10
ATTRIBUTES = ("shape", "colour", "background")  # a combination's parts, in order
FAMILY_PART = {"objects": 0, "color": 1, "style": 2}  # a combination family -> the part it names


def combination_prompt(shape: str, colour: str, background: str) -> str:
    return f"a {colour} {shape} on {background}"


def zero_shot(scorer, images: np.ndarray, labels: list[str], texts: list[str]) -> list[str]:
    """The label whose text the mini-CLIP finds closest to each image."""
    with torch.no_grad():
        similarity = scorer.embed_images(images) @ scorer.embed_texts(texts).T
    return [labels[i] for i in similarity.argmax(-1).tolist()]


def score_images(scorer, images: np.ndarray, truths: list[tuple[str, str, str]]) -> dict[str, list[bool]]:
    """Per image: shape, colour and background right by the exact detectors, and by the mini-CLIP."""
    checks = detect.read_images(images)
    shapes = zero_shot(scorer, images, list(world.SHAPES), [f"a {s}" for s in world.SHAPES])
    colours = zero_shot(scorer, images, list(world.COLOURS), [f"a {c} object" for c in world.COLOURS])
    backgrounds = zero_shot(scorer, images, list(world.BACKGROUNDS), [f"{b} style" for b in world.BACKGROUNDS])
    return {"colour": [c["colour"] == t[1] for c, t in zip(checks, truths)],
            "background": [c["background"] == t[2] for c, t in zip(checks, truths)],
            "shape": [c["shape"] == t[0] for c, t in zip(checks, truths)],
            "clip_shape": [s == t[0] for s, t in zip(shapes, truths)],
            "clip_colour": [c == t[1] for c, t in zip(colours, truths)],
            "clip_background": [b == t[2] for b, t in zip(backgrounds, truths)]}


def family_pairs(family: str) -> list[tuple[str, str, tuple[str, str, str]]]:
    """(prompt, the prompt without the family's words, the look it asks for) for every combination, or every entity
    (``facts``, whose attribute-free prompt is "an object")."""
    if family == "facts":
        return [(name, world.describe(None, None, None), look) for name, look in world.ENTITIES.items()]
    part = FAMILY_PART[family]
    return [(combination_prompt(*c), world.describe(*(None if i == part else v for i, v in enumerate(c))), c)
            for c in world.all_combinations()]


CONDITIONS = ("everywhere", "nowhere", "without_plan", "plan_only")


def condition_case(condition: str, full: str, cut: str, seed: int, plan: tuple[int, ...]) -> Case:
    """The image of ``confinement``'s ``condition``: which layers read the family's words (``full``), which the
    prompt without them (``cut``)."""
    if condition == "everywhere":
        return Case(full, seed)
    if condition == "nowhere":
        return Case(cut, seed)
    if condition == "without_plan":
        return Case(full, seed, sites=plan, target=cut)
    return Case(cut, seed, sites=plan, target=full)


def confinement(model, plan: dict[str, list[int]], seeds: tuple[int, ...], settings: Settings,
                batch_size: int = 64) -> dict[str, dict]:
    """Whether each planted family enters only through its plan's layers, the construction's own check (a
    localization method is then judged against a fact, not a hope). Per family, the rate at which the exact detectors
    read its value (every part of an entity's look) with its words read by every layer (``everywhere``), by none
    (``nowhere``: the model's prior), by every layer but the plan's (``without_plan``: near ``nowhere`` when the
    plan's layers are necessary) and by the plan's layers only (``plan_only``: near ``everywhere`` when they
    suffice)."""
    out, made = {}, {}  # made: the detectors' reading of each case list generated (the combination families share
    # their ``everywhere`` images)
    for family, layers in plan.items():
        if not layers:
            continue
        pairs = family_pairs(family)
        parts = range(3) if family == "facts" else (FAMILY_PART[family],)
        rates = {}
        for name in CONDITIONS:
            cases = tuple(condition_case(name, full, cut, seed, tuple(layers)) for full, cut, _ in pairs
                          for seed in seeds)
            if cases not in made:
                made[cases] = detect.read_images(np.concatenate(list(generate(model, cases, settings, batch_size))))
            read = made[cases]
            looks = [look for _, _, look in pairs for _ in seeds]
            rates[name] = float(np.mean([all(r[ATTRIBUTES[i]] == look[i] for i in parts)
                                         for r, look in zip(read, looks)]))
        out[family] = {"layers": list(layers), "images": len(pairs) * len(seeds), **rates,
                       "confined": rates["without_plan"] <= rates["nowhere"] + CONFINED_MARGIN,
                       "sufficient": rates["plan_only"] >= min(PLANTED_GATES.values())}
    return out


def evaluate(model_name: str = "toyworld", seeds: tuple[int, ...] = (0, 1, 2, 3), steps: int | None = None,
             guidance: float | None = None, batch_size: int = 64, grid_path: str | None = None) -> dict:
    """Measure the gates; returns accuracies (fractions) per attribute, for combinations and for entities."""
    began = time.perf_counter()
    model = load_model(model_name, device="cpu")
    scorer = load_scorer(str(CLIP_DIR))
    settings = Settings.defaults(model.spec, steps, guidance)
    combos = world.all_combinations()
    truths = combos + list(world.ENTITIES.values())
    prompts = [combination_prompt(*c) for c in combos] + list(world.ENTITIES)
    cases = [Case(p, seed) for p in prompts for seed in seeds]
    images = np.concatenate(list(generate(model, cases, settings, batch_size)))
    right = score_images(scorer, images, [t for t in truths for _ in seeds])
    n = len(combos) * len(seeds)
    result = {"model": model_name, "steps": settings.steps, "guidance": settings.guidance, "seeds": list(seeds),
              "images": len(cases), "combinations": {k: float(np.mean(v[:n])) for k, v in right.items()},
              "entities": {k: float(np.mean(v[n:])) for k, v in right.items()}}
    spec = resolve(model_name)
    if spec.unet:
        result["gates"] = {f"{part} {k}": result[part][k] >= g for part in ("combinations", "entities")
                           for k, g in PLANTED_GATES.items()}
        # Two seeds for the combinations (128 images per family and condition), every seed for the four entities.
        plan = plan_for(spec) or {}
        result["confinement"] = {
            **confinement(model, {f: v for f, v in plan.items() if f != "facts"}, seeds[:2], settings, batch_size),
            **confinement(model, {f: v for f, v in plan.items() if f == "facts"}, seeds, settings, batch_size)}
        result["gates"].update({f"{family} {check}": value[check] for family, value in result["confinement"].items()
                                for check in ("confined", "sufficient")})
    else:
        result["gates"] = {k: result["combinations"][k] >= g for k, g in GATES.items()}
    result["seconds"] = round(time.perf_counter() - began, 1)
    if grid_path:
        save_grid(images[: n : len(seeds)], grid_path)
    return result


def save_grid(images: np.ndarray, path: str, columns: int = 16) -> None:
    """Write images (N, H, W, 3) in [0, 1] as one PNG, ``columns`` per row, scaled up 4x."""
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    rows = -(-len(images) // columns)
    pad = np.ones((rows * columns - len(images), *images.shape[1:]), images.dtype)
    tiles = np.concatenate([images, pad]).reshape(rows, columns, *images.shape[1:])
    grid = (tiles.transpose(0, 2, 1, 3, 4).reshape(rows * images.shape[1], columns * images.shape[2], 3) * 255)
    Image.fromarray(grid.round().astype(np.uint8)).resize((grid.shape[1] * 4, grid.shape[0] * 4), 0).save(path)


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="toyworld")
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--grid", help="write a PNG of one image per combination here")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    result = evaluate(args.model, tuple(int(s) for s in args.seeds.split(",")), args.steps, args.guidance,
                      grid_path=args.grid)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
