"""``locolab layers``: print a model's text-reading attention layers (cross-attention; a diffusion transformer's
text-reading attention sites, with their block kind) in forward order."""

import collections
import json

from locolab.compute.cli.options import add_device_options
from locolab.compute.models.loading import load_model

COLUMNS = ("index", "block", "resolution", "heads", "query_dim", "text_dim", "path")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("layers", help="list text-reading attention layers in forward order")
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
    if model.arch.denoiser == "unet":
        print(f"{len(rows)} cross-attention layers ({model.arch.name}, resolution = latent side at "
              f"{model.spec.resolution}px)")
        return
    kinds = ", ".join(f"{n} {kind}" for kind, n in collections.Counter(r["block"] for r in rows).items())
    print(f"{len(rows)} text-reading attention sites ({model.arch.name}: {kinds}; block = the kind of transformer "
          f"block, resolution = image tokens per side at {model.spec.resolution}px)")
