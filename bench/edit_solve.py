"""``python -m bench.edit_solve``: the time of a 2-layer K+V LocoEdit at real SD-1.5 shapes (goal: < 100 ms).

An edit of layers L costs one float64 solve (shared) plus one update per ``to_k``/``to_v`` weight. SD-1.5 reads a
768-wide text embedding; its cross-attention projections are 320, 640 or 1280 wide (layers 8-9 are 1280). Weights
are random (speed does not depend on their values); keys are 4 source prompts, as in the style family.
Also reported: encoding the 5 prompts (4 sources + target) with a random-weight SD-1.5-sized CLIP text encoder.
"""

import argparse
import statistics
import time

import torch

from locolab.compute.edit.closed_form import solve_factor
from locolab.contract.specs import DEFAULT_LAMBDA

TEXT_WIDTH = 768
WIDTHS = (320, 640, 1280)
SOURCE_PROMPTS = 4


def time_edit(width: int, layers: int = 2, repeats: int = 20) -> list[float]:
    """Seconds per edit (solve + new K and V weights of ``layers`` layers), one entry per repeat after a warm-up."""
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(width, TEXT_WIDTH, generator=generator) / TEXT_WIDTH ** 0.5 for _ in range(2 * layers)]
    keys = torch.randn(SOURCE_PROMPTS, TEXT_WIDTH, generator=generator)
    values = torch.randn(1, TEXT_WIDTH, generator=generator).expand_as(keys)
    times = []
    for repeat in range(repeats + 1):
        started = time.perf_counter()
        factor = solve_factor(keys, values, DEFAULT_LAMBDA)
        [factor.apply(weight) for weight in weights]
        if repeat:
            times.append(time.perf_counter() - started)
    return times


def time_text_encoder(repeats: int = 3) -> list[float]:
    """Seconds to encode the 5 prompts of an edit with an SD-1.5-sized (ViT-L/14 text) random CLIP encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from locolab.compute.models.tokenizer import clip_tokenizer

    config = CLIPTextConfig(hidden_size=TEXT_WIDTH, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=77)
    encoder, tokenizer = CLIPTextModel(config).eval(), clip_tokenizer()
    prompts = ["van gogh"] + [f"a {kind} in the style of van gogh" for kind in ("painting", "photo", "picture")]
    tokens = tokenizer(prompts + ["a painting"], padding="max_length", max_length=77, return_tensors="pt")
    times = []
    with torch.no_grad():
        for repeat in range(repeats + 1):
            started = time.perf_counter()
            for row in tokens.input_ids:  # one prompt at a time, as the edit encodes them
                encoder(row[None])
            if repeat:
                times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.edit_solve", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-text-encoder", action="store_true", help="skip the text-encoder timing")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for width in WIDTHS:
        times = time_edit(width, repeats=args.repeats)
        print(f"2-layer K+V edit, 768 -> {width}: median {statistics.median(times) * 1e3:.2f} ms, "
              f"min {min(times) * 1e3:.2f} ms over {len(times)} runs (goal < 100 ms)")
    if not args.no_text_encoder:
        times = time_text_encoder()
        print(f"encoding 5 prompts (SD-1.5 text encoder, random weights): median "
              f"{statistics.median(times) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
