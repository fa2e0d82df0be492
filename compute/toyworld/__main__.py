"""``python -m compute.toyworld train|eval|check-edit``: retrain the toy world's models from scratch, measure its
gates, or check an evaluated edit's images with the procedural checker.

``train`` runs the three stages in order (mini-CLIP, mini-VAE, mini-UNet; fixed seeds) and writes
``compute/checkpoints/toyworld-clip/`` and ``compute/checkpoints/toyworld/``, printing each stage's wall time.
"""

import argparse
import time

import torch


def train(args) -> None:
    from locolab.compute.toyworld import train_clip, train_unet, train_vae

    torch.set_num_threads(args.threads or torch.get_num_threads())
    stages = [("clip", train_clip.train), ("vae", train_vae.train), ("unet", train_unet.train)]
    seconds = {}
    for name, stage in stages:
        if args.only and name not in args.only.split(","):
            continue
        began = time.perf_counter()
        stage()
        seconds[name] = time.perf_counter() - began
    total = sum(seconds.values())
    print(f"toyworld trained with {torch.get_num_threads()} threads: "
          + ", ".join(f"{name} {s / 60:.1f} min" for name, s in seconds.items()) + f"; total {total / 60:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m compute.toyworld", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = sub.add_parser("train", help="retrain every toy-world model from scratch")
    train_parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    train_parser.add_argument("--only", help="comma-separated stages to run: clip,vae,unet")
    train_parser.set_defaults(func=train)
    eval_parser = sub.add_parser("eval", help="measure the quality gates (extra options: see evaluate.py)")
    eval_parser.set_defaults(func=None)
    sub.add_parser("check-edit", help="an evaluated edit's images read by the procedural checker (see check_edit.py)")
    args, rest = parser.parse_known_args()
    if args.command == "eval":
        from locolab.compute.toyworld.evaluate import main as evaluate

        evaluate(rest)
    elif args.command == "check-edit":
        from locolab.compute.toyworld.check_edit import main as check_edit

        check_edit(rest)
    else:
        args.func(args)


if __name__ == "__main__":
    main()
