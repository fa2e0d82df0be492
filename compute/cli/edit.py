"""``locolab edit``: make a LocoEdit (closed form on chosen layers), all-layers, UCE, TIME, ESD-x, neuron or
DiffQuickFix (closed form on text-encoder layer 0: the published recipe or ours) edit, save it under
``<artifacts>/edits/<edit_id>/`` and optionally evaluate it. The edit's options are generated from
``contract.specs.EditSpec`` (the evaluation's from ``EvalSpec``); ``--spec FILE`` gives both as one JSON file instead
(``contract.specs.edit_job_json``: how the dashboard launches an edit)."""

import dataclasses
from pathlib import Path

from locolab.compute.cli import status
from locolab.compute.cli.eval_edit import plan_eval, run_eval
from locolab.compute.cli.options import (
    add_device_options,
    add_eval_options,
    add_offload_option,
    add_spec_options,
    model_loader,
    spec_values,
)
from locolab.compute.edit.request import make_request, stored_or_built
from locolab.compute.edit.store import edit_dir
from locolab.compute.models.loading import pick_device, pick_dtype
from locolab.contract.errors import UserError
from locolab.contract.notation import layers_text
from locolab.contract.specs import EditSpec, EvalSpec, flag_of, options, read_edit_job
from locolab.contract.store import Store, resolve_root


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("edit", help="edit a concept out of a model (LocoEdit, all layers, UCE, TIME, "
                                                "ESD-x, neurons or DiffQuickFix)")
    parser.add_argument("--spec", metavar="FILE", help="the edit (and its evaluation) as one JSON file "
                        '({"edit": {...}, "eval": {...} or null}, contract.specs.edit_job_json), instead of the edit '
                        "and evaluation options")
    add_spec_options(parser, EditSpec)
    parser.add_argument("--artifacts", help="artifact root (default $LOCOLAB_ARTIFACTS or artifacts/)")
    add_device_options(parser, dtype=False)
    add_offload_option(parser)
    parser.add_argument("--eval", action="store_true", help="evaluate the edit afterwards (see eval-edit)")
    add_eval_options(parser)
    parser.set_defaults(func=run)


def specs(args) -> tuple[EditSpec, EvalSpec | None]:
    """The edit and (with ``--eval`` or a spec file's ``eval``) its evaluation, from ``--spec FILE`` or the options."""
    if args.spec:
        given = [flag_of(f) for kind in (EditSpec, EvalSpec) for f in options(kind)
                 if getattr(args, f.name) != (None if f.default is dataclasses.MISSING else f.default)]
        if given or args.eval:
            raise UserError(f"--spec {args.spec} holds the edit and its evaluation: drop "
                            f"{', '.join(given) or '--eval'} (or edit the file)")
        try:
            text = Path(args.spec).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"--spec {args.spec}: cannot read it ({error}); give the spec file's path") from None
        return read_edit_job(text)
    if args.concept is None and args.concepts:  # --concepts a,b,c alone: the edit is named after a
        args.concept = args.concepts[0]
    missing = [flag_of(f) for f in options(EditSpec) if f.default is dataclasses.MISSING and getattr(args, f.name)
               is None]
    if missing:
        raise UserError(f"the following arguments are required: {', '.join(missing)} (or --spec FILE; see edit "
                        "--help)")
    return EditSpec(**spec_values(EditSpec, args)), EvalSpec(**spec_values(EvalSpec, args)) if args.eval else None


def _edited(meta: dict) -> str:
    if "modules" in meta:
        return ", ".join(meta["modules"])
    return layers_text(meta["layers"])


def run(args) -> None:
    spec, evaluation = specs(args)
    dtype = str(pick_dtype(pick_device(args.device), spec.dtype)).removeprefix("torch.")
    request = make_request(spec, dtype, root=args.artifacts)
    root = resolve_root(args.artifacts)
    Store(root).check_writable()
    # Every evaluation option is checked before the edit is written (a bad one must not leave an edit behind).
    plan = plan_eval(spec.model, request, evaluation, args.allow_many_images) if evaluation else None
    model = model_loader(spec, args)

    status.report(stage="editing")
    edit, built = stored_or_built(root, request, model)
    status.report(edit_id=edit.edit_id)
    where = edit_dir(root, edit.edit_id)
    if built:
        print(f"wrote edit {edit.edit_id} to {where} ({edit.meta['seconds'] * 1000:.0f} ms, {_edited(edit.meta)})")
    else:
        print(f"edit {edit.edit_id} already exists in {where} (not recomputed)")
    if "note" in edit.meta:
        print(f"note: {edit.meta['note']}")
    if evaluation:
        run_eval(model(), edit, plan, evaluation, root)
