"""``python -m bench.generation``: LocoGen generation throughput, three ways, in one process.

(a) batched: many (window, seed) cases per pipeline call, each with its own swapped layers and generator;
(b) per case: one pipeline call per case, as the official LocoGen script runs;
(c) plain: the unmodified diffusers pipeline making the same number of images at the same batch size.
Prints images/s for each and the ratios a/b and a/c. ``--model random-sd-1.5``, ``random-sdxl``, ``random-pixart``
or ``random-flux`` with ``--device cuda`` benchmarks full-size random-weight models without downloads (FLUX.1: add
``--dtype bfloat16``; ``--offload`` for accelerate's model CPU offload). On FLUX.1 each swapped image brings its
companion generation (the target prompt, same seed) into the call, so (a) makes up to twice the images it returns.
"""

import argparse
import math
import time

import torch

from locolab.compute.generation import Case, generate, generate_batch, make_encoder
from locolab.compute.models.loading import load_model
from locolab.compute.settings import Settings

PROMPT, TARGET = "a beautiful house in the style of van gogh", "a painting"


def _timed(run) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    began = time.perf_counter()
    run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.generation", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-sd1")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, help="image side (model default)")
    parser.add_argument("--window-size", type=int, default=1, help="layers per window")
    parser.add_argument("--windows", type=int, default=16, help="number of windows (from layer 0)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per window")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-per-case", action="store_true", help="skip (b), slow for full-size models")
    parser.add_argument("--offload", action="store_true", help="accelerate's model CPU offload")
    args = parser.parse_args(argv)

    model = load_model(args.model, device=args.device, dtype=args.dtype, offload=args.offload)
    settings = Settings.defaults(model.spec, args.steps, None, args.size)
    starts = range(min(args.windows, len(model.layers) - args.window_size + 1))
    cases = [Case(PROMPT, seed, (s, s + args.window_size), TARGET) for s in starts for seed in range(args.seeds)]
    encoder = make_encoder(model)
    generator = torch.device("cpu") if model.device.type == "mps" else model.device

    def plain():
        for start in range(0, len(cases), args.batch_size):
            count = min(args.batch_size, len(cases) - start)
            model.pipe(PROMPT, num_images_per_prompt=count, num_inference_steps=settings.steps,
                       guidance_scale=settings.guidance, height=settings.height, width=settings.width,
                       generator=[torch.Generator(generator).manual_seed(i) for i in range(count)], output_type="np",
                       **model.arch.plain_options(model.pipe))

    runs = {"batched": lambda: list(generate(model, cases, settings, args.batch_size)),
            "per_case": lambda: [generate_batch(model, [case], settings, encoder) for case in cases],
            "plain": plain}
    if args.skip_per_case:
        del runs["per_case"]
    # Each way runs once untimed first: kernels and allocations for its batch shapes are then warm for all three.
    runs["batched"]()
    generate_batch(model, cases[:1], settings, encoder)
    plain()
    times = {name: _timed(run) for name, run in runs.items()}
    rate = {name: len(cases) / seconds for name, seconds in times.items()}
    print(f"{args.model} on {model.device}{' (offloaded)' if model.offload else ''} "
          f"({str(model.dtype).removeprefix('torch.')}): {len(cases)} images = "
          f"{len(starts)} windows of {args.window_size} x {args.seeds} seeds, {settings.steps} steps, "
          f"{settings.width}x{settings.height}, batch {args.batch_size} "
          f"({math.ceil(len(cases) / args.batch_size)} pipeline calls)")
    for name, seconds in times.items():
        print(f"  ({'abc'[list(times).index(name)] if name != 'plain' else 'c'}) {name:<9} {seconds:8.2f} s "
              f"{rate[name]:8.2f} images/s")
    if "per_case" in rate:
        print(f"  a/b = {rate['batched'] / rate['per_case']:.2f}  (goal >= 5: batching windows)")
    print(f"  a/c = {rate['batched'] / rate['plain']:.2f}  (goal >= 0.9: the swap's overhead)")
    return rate


if __name__ == "__main__":
    main()
