"""``locolab verify [--repair]``: check an artifact root for damaged units, table parts, images, edits and
evaluations; with ``--repair``, set them aside so that rerunning what made them redoes exactly them."""

from locolab.compute.verify import find_damage, repair
from locolab.contract.store import DEFAULT_ROOT, ROOT_ENV, resolve_root


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("verify", help="check an artifact root for damage (and set it aside to redo it)")
    parser.add_argument("--artifacts", help=f"artifact root (default ${ROOT_ENV} or {DEFAULT_ROOT}/)")
    parser.add_argument("--repair", action="store_true",
                        help="move damaged files to <root>/damaged/ and delete dead writers' temporary files, so the "
                             "next sweep, trace or eval-edit redoes them")
    parser.set_defaults(func=run)


def run(args) -> int:
    """Exit status 0 when the root is whole (or was repaired), 1 when damage was found and left."""
    root = resolve_root(args.artifacts)
    report = find_damage(root)
    print(f"artifact root {root}: read {report.parts} table parts, {report.images} images, {report.edits} edits; "
          f"{len(report.damage) or 'no'} damaged")
    for item in report.damage:
        print(f"  {item.what}: {item.problem}")
    if not report.damage:
        return 0
    redos = list(dict.fromkeys(item.redo for item in report.damage if item.redo))
    if not args.repair:
        print("run `locolab verify --repair` to set them aside" + (", then redo them:" if redos else ""))
        for redo in redos:
            print(f"  {redo}")
        return 1
    moved = repair(root, report.damage)
    print(f"moved the damaged files to {moved}" if moved else "nothing to move")
    print("now redo them:" if redos else "nothing to redo")
    for redo in redos:
        print(f"  {redo}")
    return 0
