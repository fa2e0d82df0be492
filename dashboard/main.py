"""The LocoLab dashboard: ``streamlit run dashboard/main.py [-- --artifacts ROOT] [--lock-root] [--max-jobs N]
[--roots DIR ...] [--allow-model NAME ...]``."""

from pathlib import Path

import streamlit as st

from locolab.dashboard import common, url_state
from locolab.dashboard.root import launch_options, problem, typed_root_problem

# A file the server serves itself (a ":material/...:" icon is fetched from a font CDN, which an offline host lacks).
FAVICON = Path(__file__).with_name("assets") / "favicon.png"

# The pages' navigation at the top and the sidebar (only the root box) closed: on a 1280-pixel screen an open sidebar
# takes a quarter of the width, which the maps and tables need.
st.set_page_config(page_title="LocoLab", page_icon=str(FAVICON), layout="wide", initial_sidebar_state="collapsed")
# Before anything writes the URL: one browser history entry per user action (url_state.HISTORY_SCRIPT).
st.sidebar.html(url_state.HISTORY_SCRIPT, unsafe_allow_javascript=True)
# Streamlit leaves 128 px above a page under the top navigation; 72 px clear it, and the charts start higher.
st.html('<style>[data-testid="stMainBlockContainer"] {padding-top: 4.5rem}</style>')
options = launch_options()
st.session_state[common.OPTIONS_KEY] = options
if options.lock_root:
    chosen, source = options.root, options.source
else:
    chosen = st.sidebar.text_input("Artifact root", value=options.root, key="root_input", max_chars=4096,
                                   help=common.escape(f"A local folder. Started with {options.root} ({options.source})."
                                                      )).strip()
    refused = typed_root_problem(chosen, options) if chosen else None
    if refused:
        st.sidebar.error(common.escape(refused))
        chosen = options.root
    source = options.source if chosen == options.root else "typed in"
st.session_state[common.ROOT_KEY] = chosen or options.root
st.session_state[common.SOURCE_KEY] = source if chosen else options.source

pages = st.navigation([
    st.Page("views/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("views/layer_map.py", title="Layer map", icon=":material/grid_on:"),
    st.Page("views/gallery.py", title="Gallery", icon=":material/photo_library:"),
    st.Page("views/edits.py", title="Edits", icon=":material/content_cut:"),
    st.Page("views/methods.py", title="Methods compared", icon=":material/compare:"),
    st.Page("views/run_edit.py", title="Run an edit", icon=":material/play_arrow:"),
    st.Page("views/localize.py", title="Localize", icon=":material/travel_explore:"),
    st.Page("views/benchmark.py", title="Planted knowledge", icon=":material/target:"),
], position="top")
why_not = problem(common.root())
if why_not:
    st.error(common.escape(why_not))
    st.stop()
common.show_problems(common.snapshot())
url_state.note_page(pages.url_path)
pages.run()
