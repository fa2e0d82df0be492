"""``python -m compute.migrate ROOT``: rewrite an artifact root's files from before schema v3 that this version would
misread (``contract.store.outdated``), exactly, in place.

Before v3, causal tracing stored its restored site in ``window_start`` (``window_size`` 1), a top-k intervention its
k in ``window_size``, and attention contribution each site's measure as a ``scores`` row (kind ``contribution``, the
site in ``window_start``, the measure in ``score`` under the scorer id ``attention-contribution``). Each outdated
file is rewritten under its own name with the site in ``site`` and LocoGen's window columns NULL; contribution rows
move to ``tables/contributions`` under the same part name (written first, so a migration stopped at any point
redoes only what is left). Other rows, and every value, are kept as they are.
"""

import argparse
import sys

import pyarrow.parquet as pq

from locolab.contract import store
from locolab.contract.errors import UserError
from locolab.contract.names import ATTENTION_CONTRIBUTION, CONTRIBUTION, TOP_K, TRACE


def _rewritten(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the rows as v3 writes them, the contribution rows as ``contributions`` rows)."""
    kept, contributions = [], []
    for row in rows:
        method, kind = row.get("method") or "", row.get("kind")
        if method == ATTENTION_CONTRIBUTION and kind == CONTRIBUTION:
            contributions.append({"case_id": row["case_id"], "run_id": row["run_id"], "model": row["model"],
                                  "family": row["family"], "concept": row["concept"], "seed": row["seed"],
                                  "component": row.get("component"), "site": row["window_start"],
                                  "contribution": row["score"]})
            continue
        if method.startswith(f"{TRACE}-"):
            row = {**row, "site": row["window_start"] if kind == "restored" else None, "window_start": None,
                   "window_size": None}
        elif method == ATTENTION_CONTRIBUTION and kind == TOP_K:
            row = {**row, "window_size": None}
        kept.append({key: value for key, value in row.items() if key != "schema_version"})
    return kept, contributions


def migrate_file(root: str, table: str, path: str) -> int:
    """Rewrite one outdated part of ``table`` (``cases`` or ``scores``); returns how many contribution rows moved."""
    db = store.Store(root)
    kept, contributions = _rewritten(db.read(path).to_pylist())
    part = path.rsplit("/", 1)[-1].removeprefix("part-").removesuffix(".parquet")
    if contributions:
        store.write_table("contributions", contributions, part=part, root=root)
    if kept:
        data = store.conform(table, kept)
        store.atomic_write(path, lambda file: pq.write_table(data, file, compression="zstd"))
    else:
        store.remove(path)
    return len(contributions)


def migrate(root: str) -> tuple[int, int]:
    """Rewrite every outdated file of ``root``; returns (files rewritten, contribution rows moved)."""
    db = store.Store(root)
    files = moved = 0
    for table in ("cases", "scores"):
        db.outdated = []
        db.files(table)
        for path in db.outdated:
            moved += migrate_file(db.root, table, path)
            files += 1
    return files, moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute.migrate", description=__doc__.split("\n")[0])
    parser.add_argument("root", help="the artifact root (a folder or fsspec URL)")
    args = parser.parse_args(argv)
    try:
        store.check_writable_folder(args.root, "artifact root")
        files, moved = migrate(args.root)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.root}: rewrote {files} file(s) as schema v{store.SCHEMA_VERSION}"
          + (f", moved {moved} attention-contribution row(s) to tables/contributions" if moved else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
