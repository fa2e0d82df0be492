"""LocoGen images of one prompt for chosen windows, with the original and target references, written to a folder:
one PNG per image, ``grid.png`` (rows = seeds, columns = original, target, windows) and ``generation.json`` (what
was generated, how, and which layers each window swapped)."""

import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from locolab.compute.atomic import atomic_dir
from locolab.compute.generation import NOISE_SOURCE, Case, check_prompt, check_window, generate
from locolab.compute.grid import image_grid, to_pil
from locolab.compute.models.loading import Model
from locolab.compute.provenance import versions
from locolab.compute.settings import Settings
from locolab.contract.errors import UserError
from locolab.contract.store import check_writable_folder


def check_out(out: str | Path) -> None:
    """Refuse an output folder that exists and is not empty, is a file, or cannot be written."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not empty: choose another --out")
    check_writable_folder(out, "--out")


def window_images(model: Model, prompt: str, target: str, windows: Sequence[tuple[int, int]], seeds: Sequence[int],
                  settings: Settings, out: str | Path, batch_size: int = 8) -> dict:
    """Generate the original, the target and every window of ``prompt`` for each seed, and write them to ``out``
    (which must not exist or be empty; written whole or not at all).

    Returns:
        The metadata written to ``generation.json``; ``warnings`` lists prompts the text encoder truncates.
    """
    out = Path(out)
    check_out(out)
    for window in windows:
        check_window(model, window)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        truncated = {role: check_prompt(model, text) for role, text in (("prompt", prompt), ("target", target))}
    columns = [("original", None, prompt), ("target", None, target)]
    columns += [(f"{s}:{e}", (s, e), prompt) for s, e in windows]
    cases = [Case(text, seed, window, target if window else None) for seed in seeds for _, window, text in columns]
    started = time.perf_counter()
    images = np.concatenate(list(generate(model, cases, settings, batch_size)))
    elapsed = time.perf_counter() - started
    with atomic_dir(out) as tmp:
        files = []
        for case, image in zip(cases, images):
            kind = f"window_{case.window[0]}-{case.window[1]}" if case.window else (
                "original" if case.prompt == prompt else "target")
            name = f"{kind}_seed{case.seed}.png"
            to_pil(image).save(tmp / name)
            files.append({"file": name, "prompt": case.prompt, "seed": case.seed,
                          "window": list(case.window) if case.window else None,
                          "layers": [model.layers[i].path for i in range(*case.window)] if case.window else []})
        rows = [list(images[i * len(columns):(i + 1) * len(columns)]) for i in range(len(seeds))]
        image_grid(rows, [c[0] for c in columns], scale=2).save(tmp / "grid.png")
        metadata = {"model": model.name, "spec": model.spec.to_dict(), "architecture": model.arch.name,
                    "pipeline": type(model.pipe).__name__, "scheduler": type(model.pipe.scheduler).__name__,
                    "prompt": prompt, "target": target, "truncated": truncated,
                    "swap": model.arch.swap_note, "seeds": list(seeds), "steps": settings.steps,
                    "guidance": settings.guidance, "height": settings.height, "width": settings.width,
                    "device": str(model.device), "dtype": str(model.dtype).removeprefix("torch."),
                    "batch_size": batch_size, "noise": NOISE_SOURCE, "seconds": round(elapsed, 3),
                    "versions": versions(),
                    "num_layers": len(model.layers), "images": files}
        (tmp / "generation.json").write_text(json.dumps(metadata, indent=2))
    return {**metadata, "warnings": [str(w.message) for w in caught]}
