"""Methods against planted knowledge: each localization method's hit rate on the planted toy worlds, whose answers
are known by construction (``locolab benchmark-localization``; docs/method.md §9)."""

import streamlit as st

from locolab.contract import queries
from locolab.contract.planted import display_rows
from locolab.dashboard import common, data, downloads

snap = common.snapshot()
st.title("Methods against planted knowledge")
table = data.query(snap, queries.localization_benchmark)
if not table.num_rows:
    st.info(f"No benchmark in {common.code(snap.root)} yet. Run:")
    st.code(f"locolab benchmark-localization --artifacts {snap.root}", language="bash")
    st.stop()
runs = list(dict.fromkeys(table["benchmark_id"].to_pylist()))
chosen = st.selectbox("Benchmark run (newest first)", runs, key="benchmark_choice")
mine = table.filter(table["benchmark_id"].to_numpy(zero_copy_only=False) == chosen)
rows = display_rows(mine)
common.table(rows, "benchmark_rows")
downloads.table(mine, "localization-benchmark", "benchmark_csv")
seeds = mine["seeds"][0].as_py()
scorer = mine["scorer"][0].as_py() if "scorer" in mine.column_names else None
st.caption(f"Per (model, method, family): whether each concept's named layers equal the plan's, with the Wilson "
           f"interval of the exact-hit rate over the family's concepts, and the mean precision and recall over layers "
           f"with bootstrap intervals (level {mine['level'][0].as_py():g}; seeds {', '.join(map(str, seeds))}; images "
           f"scored by {common.code(scorer) if scorer else 'a scorer this run did not record'}). "
           "LocoGen names its minimal localizing window (none when no window localizes); causal tracing and attention "
           "contribution name their top-k sites, k the plan's size, and locogen-top-k, told k the same way, "
           "LocoGen's window of k layers with the largest drop, significant or not. A hit rate is an upper bound on a "
           "method's accuracy on a real model, not an estimate of it (docs/method.md §9).")
