"""``python -m bench.generation``: LocoGen generation throughput, three ways, in one process.

(a) batched: many (window, seed) cases per pipeline call, each with its own swapped layers and generator;
(b) per case: one pipeline call per case, as the official LocoGen script runs;
(c) plain: the unmodified diffusers pipeline making the same number of images at the same batch size.
The ways are interleaved and repeated (``--repeats``: round r runs every way once, in an order rotated by r), so a
burst of load on a shared machine slows one round of every way rather than every repeat of one; it prints each way's
median time with its range, and the median and range of the ratios a/b and a/c taken within each round.
``--model random-sd-1.5``, ``random-sdxl``, ``random-pixart``, ``random-flux``, ``random-sd3`` or ``random-sana``
with ``--device cuda`` benchmarks full-size random-weight models without downloads (FLUX.1: add ``--dtype bfloat16``;
``--offload`` for accelerate's model CPU offload). On FLUX.1 each swapped image brings its
companion generation (the target prompt, same seed) into the call, so (a) makes up to twice the images it returns.
"""

import argparse
import math
import statistics
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


def schedule(names: list[str], repeats: int) -> list[str]:
    """The order the ways run in: ``repeats`` rounds, each every way once, round r's order rotated by r."""
    return [names[(r + i) % len(names)] for r in range(repeats) for i in range(len(names))]


def _spread(values: list[float], digits: int) -> str:
    """``median [min, max]``."""
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


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
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of every way (median reported)")
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
    times = {name: [] for name in runs}
    for name in schedule(list(runs), args.repeats):
        times[name].append(_timed(runs[name]))
    rate = {name: len(cases) / statistics.median(seconds) for name, seconds in times.items()}
    print(f"{args.model} on {model.device}{' (offloaded)' if model.offload else ''} "
          f"({str(model.dtype).removeprefix('torch.')}): {len(cases)} images = "
          f"{len(starts)} windows of {args.window_size} x {args.seeds} seeds, {settings.steps} steps, "
          f"{settings.width}x{settings.height}, batch {args.batch_size} "
          f"({math.ceil(len(cases) / args.batch_size)} pipeline calls); {args.repeats} interleaved rounds, "
          "median [min, max]")
    for name, seconds in times.items():
        print(f"  ({'abc'[list(times).index(name)] if name != 'plain' else 'c'}) {name:<9} {_spread(seconds, 2)} s "
              f"{rate[name]:8.2f} images/s")
    ratios = {"a/b": ("per_case", "goal >= 5: batching windows"), "a/c": ("plain", "goal >= 0.9: the swap's overhead")}
    for label, (other, goal) in ratios.items():
        if other in times:  # a round's ratio: its two times were taken minutes apart at most, under the same load
            print(f"  {label} = {_spread([o / a for a, o in zip(times['batched'], times[other])], 2)}  ({goal})")
    return {"rate": rate, "times": times}


if __name__ == "__main__":
    main()
