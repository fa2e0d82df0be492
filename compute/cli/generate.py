"""``locolab generate``: LocoGen images for chosen windows, with the original and target references."""

from compute.cli.options import add_offload_option, parse_ints, parse_window
from compute.models.loading import load_model
from compute.settings import Settings
from compute.window_images import window_images
from contract.errors import UserError


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
    add_offload_option(parser)
    parser.set_defaults(func=run)


def run(args) -> None:
    seeds = parse_ints(args.seeds, "seeds")
    windows = [parse_window(w) for w in args.window or []]
    if args.window_size is not None and args.window_size < 1:
        raise UserError(f"--window-size must be >= 1, got {args.window_size}")
    model = load_model(args.model, device=args.device, dtype=args.dtype, offload=args.offload)
    if args.window_size is not None:
        if args.window_size > len(model.layers):
            raise UserError(f"--window-size {args.window_size} exceeds the {len(model.layers)} layers")
        windows = [(s, s + args.window_size) for s in range(len(model.layers) - args.window_size + 1)]
    settings = Settings.defaults(model.spec, args.steps, args.guidance, args.size)
    written = window_images(model, args.prompt, args.target, windows, seeds, settings, args.out, args.batch_size)
    for warning in written["warnings"]:
        print(f"warning: {warning}")
    print(f"wrote {len(written['images'])} images and grid.png to {args.out} ({written['seconds']:.1f} s)")
