"""``python -m compute generate``: LocoGen images for chosen windows, with the original and target references."""

import json
import time
import warnings
from pathlib import Path

import numpy as np

from .atomic import atomic_dir
from .errors import UserError
from .generation import Case, check_prompt, check_window, generate
from .grid import image_grid, to_pil
from .loading import load_model
from .provenance import versions
from .settings import Settings


def parse_window(text: str) -> tuple[int, int]:
    """``START:END`` (half-open layer range) -> (start, end)."""
    try:
        start, end = (int(part) for part in text.split(":"))
    except ValueError:
        raise UserError(f"bad window {text!r}: write START:END, e.g. 8:10 for layers 8 and 9") from None
    if start >= end:
        raise UserError(f"bad window {text!r}: START must be below END (END is exclusive)")
    return start, end


def parse_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"bad {what} {text!r}: write comma-separated integers, e.g. 0,1") from None
    if not values:
        raise UserError(f"no {what} given")
    return values


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="LocoGen images for chosen windows of cross-attention layers")
    parser.add_argument("--model", required=True, help="registry name, pipeline directory or hub id")
    parser.add_argument("--prompt", required=True, help="original prompt (shows the attribute)")
    parser.add_argument("--target", required=True, help="attribute-free prompt fed to the window's layers")
    windows = parser.add_mutually_exclusive_group(required=True)
    windows.add_argument("--window", action="append", help="START:END, half-open; repeatable")
    windows.add_argument("--window-size", type=int, help="every window of this many consecutive layers")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--out", required=True, help="output folder (created; must not exist or be empty)")
    parser.add_argument("--steps", type=int, help="denoising steps (model default)")
    parser.add_argument("--guidance", type=float, help="guidance scale (model default)")
    parser.add_argument("--size", type=int, help="image side in pixels (model default)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per pipeline call")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.set_defaults(func=run)


def run(args) -> None:
    seeds = parse_ints(args.seeds, "seeds")
    windows = [parse_window(w) for w in args.window or []]
    if args.window_size is not None and args.window_size < 1:
        raise UserError(f"--window-size must be >= 1, got {args.window_size}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not empty: choose another --out")
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    if args.window_size is not None:
        if args.window_size > len(model.layers):
            raise UserError(f"--window-size {args.window_size} exceeds the {len(model.layers)} layers")
        windows = [(s, s + args.window_size) for s in range(len(model.layers) - args.window_size + 1)]
    for window in windows:
        check_window(model, window)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        truncated = {role: check_prompt(model, text) for role, text in (("prompt", args.prompt),
                                                                        ("target", args.target))}
    for warning in caught:
        print(f"warning: {warning.message}")
    settings = Settings.defaults(model.spec, args.steps, args.guidance, args.size)
    columns = [("original", None, args.prompt), ("target", None, args.target)]
    columns += [(f"{s}:{e}", (s, e), args.prompt) for s, e in windows]
    cases = [Case(prompt, seed, window, args.target if window else None)
             for seed in seeds for _, window, prompt in columns]
    started = time.perf_counter()
    images = np.concatenate(list(generate(model, cases, settings, args.batch_size)))
    elapsed = time.perf_counter() - started
    with atomic_dir(out) as tmp:
        files = []
        for case, image in zip(cases, images):
            kind = f"window_{case.window[0]}-{case.window[1]}" if case.window else (
                "original" if case.prompt == args.prompt else "target")
            name = f"{kind}_seed{case.seed}.png"
            to_pil(image).save(tmp / name)
            files.append({"file": name, "prompt": case.prompt, "seed": case.seed,
                          "window": list(case.window) if case.window else None,
                          "layers": [model.layers[i].path for i in range(*case.window)] if case.window else []})
        rows = [list(images[i * len(columns):(i + 1) * len(columns)]) for i in range(len(seeds))]
        image_grid(rows, [c[0] for c in columns], scale=2).save(tmp / "grid.png")
        metadata = {"model": args.model, "spec": model.spec.to_dict(), "family": model.family.name,
                    "pipeline": type(model.pipe).__name__, "scheduler": type(model.pipe.scheduler).__name__,
                    "prompt": args.prompt, "target": args.target, "truncated": truncated,
                    "swap": model.family.swap_note, "seeds": seeds, "steps": settings.steps,
                    "guidance": settings.guidance, "height": settings.height, "width": settings.width,
                    "device": str(model.device), "dtype": str(model.dtype).removeprefix("torch."),
                    "batch_size": args.batch_size, "seconds": round(elapsed, 3), "versions": versions(),
                    "num_layers": len(model.layers), "images": files}
        (tmp / "generation.json").write_text(json.dumps(metadata, indent=2))
    print(f"wrote {len(cases)} images and grid.png to {out} ({elapsed:.1f} s)")
