"""``locolab export-edit EDIT_ID --format lora|diffusers|safetensors --out DIR``: a stored edit as files others load
without LocoLab (``compute.edit.export``), with its edit card."""

from locolab.compute.cli.options import add_device_options
from locolab.compute.edit.export import FORMATS, export_edit
from locolab.compute.edit.store import load_edit
from locolab.compute.models.loading import load_model
from locolab.contract import bounds
from locolab.contract.store import resolve_root


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("export-edit", help="export a stored edit as a LoRA, a diffusers pipeline folder or "
                                                       "its own safetensors, with an edit card")
    parser.add_argument("edit_id", metavar="EDIT_ID", help="an edit under <artifacts>/edits/")
    parser.add_argument("--format", dest="fmt", default="lora", choices=FORMATS,
                        help="lora: ΔW factored by SVD for pipe.load_lora_weights(DIR); diffusers: the edited "
                             "pipeline's save_pretrained folder; safetensors: the edit's own files (default lora)")
    parser.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) folder")
    parser.add_argument("--rank", type=bounds.POSITIVE_COUNT.parse,
                        help="lora: keep at most this many singular values per matrix (default: all above the "
                             "rounding level; the error is stated either way)")
    parser.add_argument("--artifacts", help="artifact root (default $LOCOLAB_ARTIFACTS or artifacts/)")
    add_device_options(parser, dtype=False)
    parser.set_defaults(func=run)


def run(args) -> None:
    root = resolve_root(args.artifacts)
    edit = load_edit(root, args.edit_id, ("edit_id", "model", "method"))
    needs_model = args.fmt != "safetensors" and not edit.units
    model = load_model(edit.meta["model"], device=args.device, dtype=edit.meta.get("dtype", "auto")) if needs_model \
        else None
    out, card = export_edit(model, edit, args.out, args.fmt, root=root, rank=args.rank)
    detail = ""
    if "lora" in card:
        lora = card["lora"]
        truncated = f" (truncated to {args.rank})" if args.rank else ""
        detail = (f": LoRA rank {lora['rank']} over {len(lora['ranks'])} matrices{truncated}, largest weight error "
                  f"{lora['max_error']:.3g}")
    print(f"exported edit {edit.edit_id} as {args.fmt} to {out}{detail}")
