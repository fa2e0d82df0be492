"""``python -m bench.dashboard_queries [--rows N] [--root DIR] [--demo DIR]``: time the dashboard's queries on a
large synthetic store, and its pages' first render there and on a demo root.

Writes (once; reused when ``--root`` already holds it) a store of about N score rows (and as many case rows) shaped
like real sweeps: four models (three 16-layer, one 70-layer), one run each, the four attribute families, window sizes
1-4, several prompts and seeds. Then prints, in milliseconds: opening the store, building the localization table of
the 70-layer run (its bootstrap intervals included; once per state of the store, run and level), the layer-map query
(cells + minimal windows, what each change of m or threshold costs), and the first render of the Overview, Layer map
and Gallery pages (AppTest, server side; caches cleared before each page, so each pays for its own queries). With
``--demo DIR`` (``make bench`` passes the demo's root, ``artifacts/``, when it holds results) the same pages are timed
on that root too.
"""

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import pyarrow as pa

from locolab.contract import queries
from locolab.contract.names import ALL_LAYERS, LOCOGEN, ORIGINAL, TARGET, WINDOW
from locolab.contract.store import Store, write_table

MODELS = {"sd-1.4": 16, "sd-1.5": 16, "sd-2.1": 16, "sdxl-base": 70}
FAMILIES = {"style": 8, "objects": 9, "facts": 7, "color": 7}
SIZES = (1, 2, 3, 4)
PROMPTS = 4


def _unit_rows(model: str, layers: int, family: str, concept: str, seeds: int, rng) -> tuple[pa.Table, pa.Table]:
    """Score and case rows of one concept: original, target, all-layers and every window, per prompt and seed."""
    windows = [(ORIGINAL, None, None), (TARGET, None, None), (ALL_LAYERS, 0, layers)]
    windows += [(WINDOW, start, size) for size in SIZES for start in range(layers - size + 1)]
    kinds, starts, sizes = (np.array(column, dtype=object) for column in zip(*windows))
    repeat = PROMPTS * seeds
    n = len(windows) * repeat
    prompt_seed = np.arange(n) // len(windows)
    case_ids = [f"{model}|{concept}|{p}|{k}|{s}|{m}" for p, k, s, m in
                zip(prompt_seed, np.tile(kinds, repeat), np.tile(starts, repeat), np.tile(sizes, repeat))]
    common = {
        "case_id": case_ids, "run_id": [f"bench-{model}"] * n, "model": [model] * n, "family": [family] * n,
        "concept": [concept] * n, "kind": pa.array(np.tile(kinds, repeat).tolist(), pa.string()),
        "window_start": pa.array(np.tile(starts, repeat).tolist(), pa.int32()),
        "window_size": pa.array(np.tile(sizes, repeat).tolist(), pa.int32()), "seed": prompt_seed % seeds,
        "method": [LOCOGEN] * n}
    scores = pa.table({**common, "scorer_id": ["openai/clip-vit-large-patch14"] * n, "score_text": [concept] * n,
                       "score": rng.normal(0.25, 0.02, n)})
    cases = pa.table({**common, "prompt": [f"prompt {p // seeds} of {concept}" for p in prompt_seed],
                      "target": [f"target of {family}"] * n, "steps": pa.array([50] * n, pa.int32()),
                      "guidance": [7.5] * n, "height": pa.array([512] * n, pa.int32()),
                      "width": pa.array([512] * n, pa.int32())})
    return scores, cases


def write_store(root: str, rows: int) -> int:
    """Write a synthetic store of about ``rows`` score rows (one Parquet part per concept); returns the count."""
    rng = np.random.default_rng(0)
    per_seed = sum(FAMILIES.values()) * PROMPTS * sum(3 + sum(n - m + 1 for m in SIZES) for n in MODELS.values())
    seeds = max(1, round(rows / per_seed))
    written = 0
    for model, layers in MODELS.items():
        write_table("runs", [{"run_id": f"bench-{model}", "model": model, "config_name": "bench", "status": "finished",
                              "shard": 0, "num_shards": 1, "method": LOCOGEN, "scheduler": "PNDMScheduler",
                              "reference": ALL_LAYERS if layers == 70 else TARGET}], f"bench-{model}-0", root=root)
        write_table("layers", [{"run_id": f"bench-{model}", "model": model, "index": i, "block": "down",
                                "resolution": 8} for i in range(layers)], f"bench-{model}", root=root)
        for family, count in FAMILIES.items():
            for c in range(count):
                scores, cases = _unit_rows(model, layers, family, f"{family}-{c}", seeds, rng)
                write_table("scores", scores, f"bench-{model}-{family}-{c}", root=root)
                write_table("cases", cases, f"bench-{model}-{family}-{c}", root=root)
                written += scores.num_rows
    return written


def _ms(function, repeat: int = 1) -> tuple[float, object]:
    """Median wall time of ``function()`` over ``repeat`` calls, in ms, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


PAGES = (("Overview", None), ("Layer map", "views/layer_map.py"), ("Gallery", "views/gallery.py"))


def _render_ms(root: str, page: str | None) -> float:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    os.environ["LOCOLAB_ARTIFACTS"] = root
    app = AppTest.from_file(os.path.join(os.path.dirname(__file__), os.pardir, "dashboard", "main.py"),
                            default_timeout=120)
    started = time.perf_counter()
    app.run()
    if page:
        started = time.perf_counter()
        app.switch_page(page).run()
    if app.exception:
        raise RuntimeError(app.exception[0].value)
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard_queries", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="score rows to write (default 1,000,000)")
    parser.add_argument("--root", help="store folder (default: a new temporary folder)")
    parser.add_argument("--repeat", type=int, default=20, help="timed repetitions of the layer-map query")
    parser.add_argument("--demo", help="also time the pages' first render on this root (e.g. make demo's artifacts/)")
    args = parser.parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix="locolab-bench-")
    if not os.path.isdir(os.path.join(root, "tables", "scores")):
        started = time.perf_counter()
        count = write_store(root, args.rows)
        print(f"wrote {count:,} score rows to {root} in {time.perf_counter() - started:.1f} s")
    store = Store(root)
    open_ms, con = _ms(store.connect)
    count = con.execute("SELECT count(*) FROM scores").fetchall()[0][0]
    runs_ms, runs = _ms(lambda: queries.run_list(con))
    run_id = queries.default_run(runs, "sdxl-base")
    build_ms, loc = _ms(lambda: queries.localization_table(con, run_id, 0.95))
    scorer = loc["scorer_id"][0].as_py()
    query_ms, _ = _ms(lambda: (queries.layer_cells(loc, scorer, 2, 0.5),
                               queries.minimal_windows(loc, scorer, 0.5)), args.repeat)
    print(f"store: {count:,} score rows; run {run_id}: {loc.num_rows:,} windows, "
          f"{loc['n_units'][0].as_py()} prompt x seed units per concept")
    print(f"open store (DuckDB views):              {open_ms:8.1f} ms")
    print(f"run list with settings:                 {runs_ms:8.1f} ms")
    print(f"localization table of the 70-layer run: {build_ms:8.1f} ms  (once per new part and level; "
          "bootstrap intervals included)")
    print(f"layer-map query (cells + minimal):      {query_ms:8.1f} ms  (median of {args.repeat}; goal < 100 ms)")
    for name, page in PAGES:
        print(f"{name + ' first render (AppTest):':40}{_render_ms(root, page):8.1f} ms  (goal < 3000 ms)")
    print("  (the Layer map's includes the default run's localization table)")
    if args.demo and os.path.isdir(os.path.join(args.demo, "tables")):
        for name, page in PAGES:
            label = f"demo root: {name} first render:"
            print(f"{label:40}{_render_ms(args.demo, page):8.1f} ms  (goal < 3000 ms)")
    elif args.demo:
        print(f"demo root {args.demo} holds no results (make demo-compute writes them): not timed")


if __name__ == "__main__":
    main()
