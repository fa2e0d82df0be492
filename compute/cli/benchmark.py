"""``locolab benchmark-localization``: run LocoGen, causal tracing and attention contribution on the planted toy
worlds and print each method's hit rate against the plans (``compute.benchmark``)."""

import argparse

from locolab.compute.cli.options import add_device_options, parse_ints, parse_shard, seeds
from locolab.compute.cli.summary import add_rule_options, rule_of
from locolab.contract import bounds, store
from locolab.contract.errors import UserError


def _names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"no names in {text!r}: write comma-separated names")
    return names


def _sizes(text: str) -> list[int]:
    try:
        return parse_ints(text, "window sizes", bounds.POSITIVE_COUNT)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_parser(subparsers) -> None:
    from locolab.compute.benchmark import METHODS, PLANTED_MODELS, SEEDS
    from locolab.compute.scoring import EMBEDDED_SCORERS
    from locolab.compute.toyworld.detect import DETECTOR_SCORER

    parser = subparsers.add_parser("benchmark-localization",
                                   help="score localization methods against planted toy worlds' known answers")
    parser.add_argument("--models", type=_names, default=PLANTED_MODELS,
                        help=f"planted models, comma-separated (default {','.join(PLANTED_MODELS)})")
    parser.add_argument("--methods", type=_names, default=METHODS,
                        help=f"methods, comma-separated (default {','.join(METHODS)})")
    parser.add_argument("--seeds", type=seeds, default=list(SEEDS),
                        help=f"seeds (default {','.join(map(str, SEEDS))}: {4 * len(SEEDS)} units per concept)")
    parser.add_argument("--families", type=_names, help="only these families (default: all four)")
    parser.add_argument("--window-sizes", type=_sizes, help="LocoGen's window sizes (default the config's, 1,2)")
    parser.add_argument("--concepts", type=bounds.POSITIVE_COUNT.parse,
                        help="only the first N concepts of each family (default: all)")
    parser.add_argument("--scorer", default=DETECTOR_SCORER, choices=(DETECTOR_SCORER, *EMBEDDED_SCORERS),
                        help=f"what scores the images (default {DETECTOR_SCORER}: the toy world's exact detectors; "
                             "toyworld-clip: the mini-CLIP, to see what an imperfect scorer costs)")
    parser.add_argument("--shard", default="0/1",
                        help="I/N: run the I-th of N shards of every study and make no table; a last run without "
                             "--shard makes it")
    parser.add_argument("--artifacts", help=f"artifact root (default ${store.ROOT_ENV} or {store.DEFAULT_ROOT}/)")
    parser.add_argument("--batch-size", type=bounds.BATCH_SIZE.parse, help="images per pipeline call")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device_options(parser, dtype=False)
    add_rule_options(parser)
    parser.set_defaults(func=run)


def run(args) -> None:
    from locolab.compute.benchmark import benchmark
    from locolab.contract.planted import render

    shard, num_shards = parse_shard(args.shard)
    root = store.resolve_root(args.artifacts)
    store.Store(root).check_writable()
    table = benchmark(root, args.models, args.methods, tuple(args.seeds), args.families, args.window_sizes,
                      args.concepts, args.device, args.batch_size, not args.no_progress, rule_of(args), shard,
                      num_shards, args.scorer)
    if table is not None:
        print(render(table))
