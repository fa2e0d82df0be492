"""Gallery: the images behind one (model, concept, window size m): original, target and every window, per seed."""

import streamlit as st

from contract import bounds
from dashboard import common, data, downloads, queries
from dashboard.figures import row_label, window_label

WINDOWS_PER_PAGE = 4
MAX_SEEDS = 4

snap = common.snapshot()
common.require_results(snap)
st.title("Gallery")
request = st.session_state.pop("gallery_request", None)
if request:  # from the Layer map: preset the widgets before they are drawn
    st.session_state.update(gal_model=request["model"], gal_concept=(request["family"], request["concept"]),
                            gal_size=request["size"], gal_scorer=request["scorer"], gal_focus=request["start"])

top = st.columns([3, 3, 1, 2])
model = top[0].selectbox("Model", common.bounded(data.query(snap, queries.models), "models"), key="gal_model")
concepts = common.bounded(data.query(snap, queries.concepts, model), "concepts")
if not concepts:
    st.info(f"No cases for {common.escape(model)} yet.")
    st.stop()
if st.session_state.get("gal_concept") not in concepts:
    st.session_state["gal_concept"] = concepts[0]
family, concept = top[1].selectbox("Concept", concepts, format_func=lambda key: row_label(*key), key="gal_concept")
sizes = [m for m in data.query(snap, queries.window_sizes, model, family, concept) if 0 < m <= bounds.MAX_LAYERS]
if not sizes:
    st.info(f"No window cases for {common.escape(row_label(family, concept))} yet.")
    st.stop()
if st.session_state.get("gal_size") not in sizes:
    st.session_state["gal_size"] = sizes[0]
size = top[2].selectbox("Window size m", sizes, key="gal_size")
scorers = common.bounded(data.query(snap, queries.scorers, model), "scorers")
scorer = top[3].selectbox("Scorer", scorers or [None], key="gal_scorer")

cases = data.query(snap, queries.gallery, model, scorer, family, concept, size).to_pylist()
if not cases:
    st.info(f"No cases for {common.escape(row_label(family, concept))} at m = {size}.")
    st.stop()
prompts = common.bounded(list(dict.fromkeys(case["prompt"] for case in cases)), "prompts")
prompt = st.selectbox("Prompt", prompts, key="gal_prompt") if len(prompts) > 1 else prompts[0]
cases = [case for case in cases if case["prompt"] == prompt]
all_seeds = common.bounded(sorted({case["seed"] for case in cases}), "seeds")
seeds = st.multiselect("Seeds", all_seeds, default=all_seeds[:MAX_SEEDS], key=f"gal_seeds_{len(all_seeds)}")
st.caption(common.escape(f"Original prompt: “{prompt}” · target prompt: “{cases[0]['target']}” · scorer {scorer}"))
downloads.concept_sheet(snap, cases, model, scorer, family, concept, size, prompt)


def grid_row(label: str, row_cases: list[dict]) -> None:
    """A label cell, then one image per chosen seed with its score."""
    by_seed = {case["seed"]: case for case in row_cases}
    scores = [case["score"] for case in row_cases if case["score"] is not None]
    # At least MAX_SEEDS image columns, so a few seeds do not blow small images up to the page width.
    cells = st.columns([1.3] + [1] * max(len(seeds), MAX_SEEDS))
    cells[0].markdown(f"**{label}**")
    if scores:
        cells[0].caption(f"mean score {sum(scores) / len(scores):.4f}")
    for cell, seed in zip(cells[1:], seeds):
        with cell:
            case = by_seed.get(seed)
            if case is None:
                st.caption(f"seed {seed}: not generated")
            else:
                common.image(case["image_path"], f"seed {seed} · {common.score_text(case['score'])}")


grid_row("Original", [case for case in cases if case["kind"] == "original"])
grid_row("Target", [case for case in cases if case["kind"] == "target"])
starts = sorted({case["window_start"] for case in cases
                 if case["kind"] == "window" and 0 <= case["window_start"] < bounds.MAX_LAYERS})
pages = max(1, -(-len(starts) // WINDOWS_PER_PAGE))
focus = st.session_state.get("gal_focus")  # the window chosen on the Layer map: its page opens, its row is marked
st.divider()
st.markdown(f"**Windows of m = {size}** ({len(starts)} windows, {WINDOWS_PER_PAGE} per page)")
page = st.pagination(pages, default=starts.index(focus) // WINDOWS_PER_PAGE + 1 if focus in starts else 1,
                     key=f"gal_page_{model}_{family}_{concept}_{size}_{prompt}_{focus}")
for start in starts[(page - 1) * WINDOWS_PER_PAGE:page * WINDOWS_PER_PAGE]:
    grid_row(window_label(start, size) + (" ◀" if start == focus else ""),
             [case for case in cases if case["kind"] == "window" and case["window_start"] == start])
