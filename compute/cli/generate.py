"""``locolab generate``: LocoGen images for chosen windows, with the original and target references."""

from locolab.compute.cli.options import (
    add_allow_many,
    add_device_options,
    add_offload_option,
    add_sampling_options,
    check_image_count,
    parse_window,
    seeds,
)
from locolab.compute.models.loading import load_model, resolve
from locolab.compute.settings import Settings
from locolab.compute.window_images import check_out, window_images
from locolab.contract import bounds
from locolab.contract.errors import UserError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="LocoGen images for chosen windows of cross-attention layers")
    parser.add_argument("--model", required=True, help="registry name, pipeline directory or hub id")
    parser.add_argument("--prompt", required=True, help="original prompt (shows the attribute)")
    parser.add_argument("--target", required=True, help="attribute-free prompt fed to the window's layers")
    windows = parser.add_mutually_exclusive_group(required=True)
    windows.add_argument("--window", action="append", help="START:END, half-open; repeatable")
    windows.add_argument("--window-size", type=bounds.POSITIVE_COUNT.parse,
                         help="every window of this many consecutive layers")
    parser.add_argument("--seeds", default="0", type=seeds, help="comma-separated seeds (default 0)")
    parser.add_argument("--out", required=True, help="output folder (created; must not exist or be empty)")
    add_sampling_options(parser)
    parser.add_argument("--batch-size", type=bounds.BATCH_SIZE.parse, default=8, help="images per pipeline call")
    add_device_options(parser)
    add_offload_option(parser)
    add_allow_many(parser)
    parser.set_defaults(func=run)


def run(args) -> None:
    windows = [parse_window(w) for w in args.window or []]
    if len(set(windows)) != len(windows):
        repeated = next(w for w in windows if windows.count(w) > 1)
        raise UserError(f"--window {repeated[0]}:{repeated[1]} is given twice: give each window once")
    spec = resolve(args.model)
    settings = Settings.defaults(spec, args.steps, args.guidance, args.size)
    check_out(args.out)
    if spec.num_layers is not None:  # known without loading: check the images' count before the model loads
        count = len(windows) if args.window_size is None else max(0, spec.num_layers - args.window_size + 1)
        check_image_count(len(args.seeds) * (2 + count), args.allow_many_images)
    model = load_model(args.model, device=args.device, dtype=args.dtype, offload=args.offload, fp8=args.fp8)
    if args.window_size is not None:
        if args.window_size > len(model.layers):
            raise UserError(f"--window-size {args.window_size} exceeds the {len(model.layers)} layers")
        windows = [(s, s + args.window_size) for s in range(len(model.layers) - args.window_size + 1)]
    check_image_count(len(args.seeds) * (2 + len(windows)), args.allow_many_images)
    written = window_images(model, args.prompt, args.target, windows, args.seeds, settings, args.out,
                            args.batch_size)
    for warning in written["warnings"]:
        print(f"warning: {warning}")
    print(f"wrote {len(written['images'])} images and grid.png to {args.out} ({written['seconds']:.1f} s)")
