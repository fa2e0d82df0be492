"""``locolab many-concepts``: efficacy and preservation against the number of concepts in one edit
(``compute.edit.many_concepts``): the first 1, 2, 4, ... of ``--concepts`` (default: the family's) edited in one
solve with the edit options, each evaluated, then one table."""

import argparse

from locolab.compute.cli.eval_edit import plan_eval
from locolab.compute.cli.options import (
    add_device_options,
    add_eval_options,
    add_offload_option,
    add_spec_options,
    model_loader,
    parse_ints,
    spec_values,
)
from locolab.compute.edit.many_concepts import check_counts, default_counts, table_lines
from locolab.compute.edit.many_concepts import run as run_counts
from locolab.compute.edit.request import make_request
from locolab.compute.models.loading import pick_device, pick_dtype
from locolab.contract import bounds
from locolab.contract.catalog.attributes import attribute_family, prompt_set_for
from locolab.contract.errors import UserError
from locolab.contract.specs import MANY_CONCEPTS, EditSpec, EvalSpec
from locolab.contract.store import Store, resolve_root


def _counts(text: str) -> list[int]:
    """argparse ``type=`` of ``--counts``: comma-separated positive counts, each once."""
    try:
        return parse_ints(text, "--counts", bounds.POSITIVE_COUNT)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("many-concepts", help="efficacy and preservation as the number of concepts in one "
                                                         "edit grows (1, 2, 4, ...)")
    add_spec_options(parser, EditSpec, skip=("concept",))
    parser.add_argument("--counts", type=_counts,
                        help="how many of the concepts each edit takes, comma-separated (default 1, 2, 4, ... and "
                             "all of them)")
    parser.add_argument("--artifacts", help="artifact root (default $LOCOLAB_ARTIFACTS or artifacts/)")
    add_device_options(parser, dtype=False)
    add_offload_option(parser)
    add_eval_options(parser, attack=False)  # the recovery attack attacks one concept
    parser.set_defaults(func=run)


def run(args) -> None:
    if args.method not in MANY_CONCEPTS:
        raise UserError(f"many-concepts edits several concepts in one solve: use --method "
                        f"{', '.join(MANY_CONCEPTS)}, not {args.method}")
    concepts = list(args.concepts or attribute_family(args.family, prompt_set_for(args.model, args.prompt_set))
                    .concepts)
    counts = check_counts(args.counts or default_counts(len(concepts)), len(concepts))
    spec = EditSpec(**{**spec_values(EditSpec, args), "concept": concepts[0],
                       "concepts": tuple(concepts[:counts[-1]]) if counts[-1] > 1 else None})
    evaluation = EvalSpec(**spec_values(EvalSpec, args))
    root = resolve_root(args.artifacts)
    Store(root).check_writable()
    dtype = str(pick_dtype(pick_device(args.device), spec.dtype)).removeprefix("torch.")
    # The largest edit's evaluation has the most images: checked (and the scorer loaded) before anything is written.
    plan = plan_eval(spec.model, make_request(spec, dtype, root=root), evaluation, args.allow_many_images)
    model = model_loader(spec, args)

    found = run_counts(spec, evaluation, concepts, counts, root, dtype, model, plan)
    print(f"{spec.method} on {spec.model}, {spec.family}, evaluated with seeds {list(evaluation.seeds)}:")
    print("\n".join(table_lines(found, concepts)))
