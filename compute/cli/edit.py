"""``locolab edit``: make a LocoEdit (closed form on chosen layers), all-layers, neuron or DiffQuickFix (closed form
on text-encoder layer 0: the published recipe or ours) edit, save it under ``<artifacts>/edits/<edit_id>/`` and
optionally evaluate it."""

from compute.attributes import PROMPT_SETS
from compute.cli import status
from compute.cli.eval_edit import plan_eval, run_eval
from compute.cli.options import add_device_options, add_eval_options, add_offload_option, parse_ints
from compute.edit import DEFAULT_LAMBDA
from compute.edit_request import DEFAULT_TOPK, make_request, stored_or_built
from compute.edit_store import edit_dir
from compute.models.loading import load_model
from compute.neuron import DEFAULT_POSITION
from contract import bounds
from contract.names import FAMILIES, KEY_READINGS, METHODS, NEURON_SELECTIONS, POSITIONS, default_positions
from contract.store import Store, resolve_root


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("edit", help="edit a concept out of a model (LocoEdit, all layers, neurons or "
                                                "DiffQuickFix)")
    parser.add_argument("--model", required=True, help="registry name, pipeline directory or hub id")
    parser.add_argument("--family", required=True, choices=FAMILIES, help="attribute family (prompt set)")
    parser.add_argument("--concept", required=True, help='the concept to edit, e.g. "van gogh"')
    parser.add_argument("--target", help="what the concept should become (default: the family's target)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--layers", help="comma-separated layer indices, e.g. 8,9")
    where.add_argument("--from-run", metavar="RUN_ID",
                       help="use the minimal localizing window of a stored sweep (a run id, or its YAML config)")
    parser.add_argument("--threshold", type=bounds.THRESHOLD.parse, default=0.5,
                        help="with --from-run: fraction of the original-to-target gap a window must remove")
    parser.add_argument("--method", choices=METHODS, default="loco",
                        help="loco (LocoEdit), all-layers, neuron, diffquickfix (the predecessor's published recipe) "
                             "or diffquickfix-family (ours: the family's prompts to one target, bias counted once)")
    parser.add_argument("--lambda", dest="lam", type=bounds.LAMBDA.parse, default=DEFAULT_LAMBDA,
                        help="ridge weight of the closed form (> 0)")
    parser.add_argument("--prompt", action="append", dest="prompts",
                        help="source prompt containing the concept; repeatable (default: the family's edit templates; "
                             "diffquickfix: the concept and 'a photo of / an image of / a picture of' it, each paired "
                             "with the same phrase of the target)")
    parser.add_argument("--topk", type=bounds.POSITIVE_COUNT.parse, default=DEFAULT_TOPK,
                        help="neuron: units to hold, per key/value matrix (default selection) or in all (pooled)")
    parser.add_argument("--neuron-selection", choices=NEURON_SELECTIONS, default=NEURON_SELECTIONS[0],
                        help="neuron: the top k of each matrix (per-matrix, the official code's) or of all the "
                             "chosen layers' matrices together (pooled)")
    parser.add_argument("--position", type=bounds.COUNT.parse, default=DEFAULT_POSITION,
                        help="neuron: token position ranked")
    parser.add_argument("--positions", choices=POSITIONS,
                        help="closed-form methods: key positions, the last subject token alone or with every later "
                             "(end-of-text, padding) position (default: subject for loco/all-layers as in the paper, "
                             f"{default_positions('diffquickfix')} for the diffquickfix recipes)")
    parser.add_argument("--preserve-others", action="store_true",
                        help="closed-form methods: also key the family's other concepts' source prompts, at every "
                             "position, mapped to themselves, so the edit leaves them alone (not in the paper)")
    parser.add_argument("--prompt-set", choices=PROMPT_SETS,
                        help="prompt set of --family (default: the registered model's, else paper)")
    parser.add_argument("--artifacts", help="artifact root (default $LOCOLAB_ARTIFACTS or artifacts/)")
    parser.add_argument("--key-reading", choices=KEY_READINGS,
                        help="LocoEdit on several joint-attention blocks (FLUX.1, SD3): read each block's keys through "
                             "the earlier blocks already edited (sequential, the default) or all from the unedited "
                             "model (parallel)")
    add_device_options(parser)
    add_offload_option(parser)
    parser.add_argument("--eval", action="store_true", help="evaluate the edit afterwards (see eval-edit)")
    add_eval_options(parser)
    parser.set_defaults(func=run)


def _edited(meta: dict) -> str:
    if "modules" in meta:
        return ", ".join(meta["modules"])
    layers = meta["layers"]
    shown = f"{layers[0]}-{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) else layers
    return f"layers {shown}"


def run(args) -> None:
    request = make_request(
        args.model, args.family, args.concept, args.method, target=args.target,
        layers=parse_ints(args.layers, "layers") if args.layers else None, from_run=args.from_run,
        threshold=args.threshold, lam=args.lam, prompts=args.prompts, topk=args.topk, position=args.position,
        positions=args.positions, preserve_others=args.preserve_others, selection=args.neuron_selection,
        prompt_set=args.prompt_set, root=args.artifacts, key_reading=args.key_reading)
    root = resolve_root(args.artifacts)
    Store(root).check_writable()
    # Every evaluation option is checked before the edit is written (a bad one must not leave an edit behind).
    plan = plan_eval(args.model, request, args) if args.eval else None
    loaded = []

    def model():
        if not loaded:
            loaded.append(load_model(args.model, device=args.device, dtype=args.dtype, offload=args.offload,
                                     fp8=args.fp8))
        return loaded[0]

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
    if args.eval:
        run_eval(model(), edit, plan, args)
