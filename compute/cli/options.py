"""Command-line options and parsers that several commands share: the store-writing run options (sweep, trace),
the evaluation options (edit --eval, eval-edit), and comma-separated integers and windows."""

from compute.plan import launcher_shard
from contract.errors import UserError
from contract.store import DEFAULT_ROOT, ROOT_ENV


def parse_ints(text: str, what: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; a one-line error naming ``what`` otherwise."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"bad {what} {text!r}: write comma-separated integers, e.g. 0,1") from None
    if not values:
        raise UserError(f"no {what} given")
    return values


def parse_window(text: str) -> tuple[int, int]:
    """``START:END`` (half-open layer range) -> (start, end)."""
    try:
        start, end = (int(part) for part in text.split(":"))
    except ValueError:
        raise UserError(f"bad window {text!r}: write START:END, e.g. 8:10 for layers 8 and 9") from None
    if start >= end:
        raise UserError(f"bad window {text!r}: START must be below END (END is exclusive)")
    return start, end


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"bad --shard {text!r}: write I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise UserError(f"bad --shard {text!r}: need 0 <= I < N")
    return index, count


def add_offload_option(parser) -> None:
    """``--offload``: load the model with accelerate's model CPU offload (``load_model(offload=True)``)."""
    parser.add_argument("--offload", action="store_true", help="model CPU offload (accelerate): components wait on the "
                        "CPU and run on the device one at a time, e.g. FLUX.1 on a 24 GB GPU")


def add_run_options(parser, unit_cases: str, dry_run: str) -> None:
    """The options every store-writing run shares (sweep, trace): root, sharding, limits, batch, device."""
    parser.add_argument("--artifacts", help=f"artifact root (default ${ROOT_ENV} or {DEFAULT_ROOT}/)")
    parser.add_argument("--shard", default="0/1", help="I/N: run the I-th of N shards (0-based), e.g. for array jobs")
    parser.add_argument("--limit", type=int, help=f"run at most K work units (one prompt with all its {unit_cases})")
    parser.add_argument("--dry-run", action="store_true", help=dry_run)
    parser.add_argument("--batch-size", type=int, help="images per pipeline call (default: config, else auto)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    add_offload_option(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_options(args) -> tuple[int, int, str]:
    """Check the shared options (``add_run_options``); returns this process's (shard, num_shards, device)."""
    shard, num_shards = parse_shard(args.shard)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    return launcher_shard(shard, num_shards, args.device)


def add_eval_options(parser) -> None:
    """The evaluation options shared by ``edit --eval`` and ``eval-edit``."""
    from compute.scoring import DEFAULT_SCORER, TINY_SCORER

    group = parser.add_argument_group("evaluation")
    group.add_argument("--seeds", default="0,1", help="comma-separated seeds, the same before and after")
    group.add_argument("--steps", type=int, help="denoising steps (model default)")
    group.add_argument("--guidance", type=float, help="guidance scale (model default)")
    group.add_argument("--size", type=int, help="image side in pixels (model default)")
    group.add_argument("--scorer", help=f"CLIP scorer (default: the model's own, e.g. the toy world's mini-CLIP; "
                                        f"{TINY_SCORER} for built-in models; else {DEFAULT_SCORER})")
    group.add_argument("--unrelated", type=int,
                       help="preservation prompts for specificity: a random subset of N (seed 0), e.g. 20 on a CPU "
                            "(default: the prompt set's whole set, 335 generic prompts for real models as the paper's "
                            "320)")
    group.add_argument("--other-concepts", type=int, default=3, help="other concepts of the family for specificity")
    group.add_argument("--batch-size", type=int, default=8, help="images per pipeline call")
