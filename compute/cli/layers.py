"""``locolab layers``: print a model's text-reading attention layers (cross-attention; a diffusion transformer's
text-reading attention sites, with their block kind) in forward order."""

import collections
import json

from locolab.compute.cli.options import add_device_options
from locolab.compute.models.loading import load_model
from locolab.contract.catalog.registry import RANDOM_UNET

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
    plan = None
    if model.spec.unet:  # a planted toy world: the layers each family enters through
        from locolab.compute.toyworld.train_planted import plan_for

        plan = plan_for(model.spec)
        for row in rows:
            row["planted"] = [family for family, layers in plan.items() if row["index"] in layers]
    if args.json:
        print(json.dumps({"model": args.model, "architecture": model.arch.name, "layers": rows,
                          **({"plan": plan} if plan is not None else {})}, indent=2))
        return
    columns = COLUMNS + (("planted",) if plan is not None else ())
    for row in rows:
        row["planted"] = ",".join(row.get("planted", ())) or "-"
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip())
    if plan is not None and model.spec.unet == RANDOM_UNET:
        print("planted: nothing (random weights: the planted benchmark's control, where no concept is measurable)")
    elif plan is not None:
        print("planted: " + "; ".join(f"{family} -> {', '.join(map(str, layers)) or 'everywhere (control)'}"
                                      for family, layers in plan.items())
              + " (each family enters only through its layers; compute/toyworld/train_planted.py)")
    if model.arch.denoiser == "unet":
        print(f"{len(rows)} cross-attention layers ({model.arch.name}, resolution = latent side at "
              f"{model.spec.resolution}px)")
        return
    kinds = ", ".join(f"{n} {kind}" for kind, n in collections.Counter(r["block"] for r in rows).items())
    print(f"{len(rows)} text-reading attention sites ({model.arch.name}: {kinds}; block = the kind of transformer "
          f"block, resolution = image tokens per side at {model.spec.resolution}px)")
