"""``locolab layers``: print a model's cross-attention layers in forward order."""

import json

from compute.cli.options import add_device_options
from compute.models.loading import load_model

COLUMNS = ("index", "block", "resolution", "heads", "query_dim", "text_dim", "path")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("layers", help="list cross-attention layers in forward order")
    parser.add_argument("--model", required=True, help="registry name, pipeline directory or hub id")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_device_options(parser, dtype=False)
    parser.set_defaults(func=run)


def run(args) -> None:
    model = load_model(args.model, device=args.device)
    rows = [layer.to_dict() for layer in model.layers]
    if args.json:
        print(json.dumps({"model": args.model, "architecture": model.arch.name, "layers": rows}, indent=2))
        return
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in COLUMNS))
    print(f"{len(rows)} cross-attention layers ({model.arch.name}, resolution = latent side at "
          f"{model.spec.resolution}px)")
