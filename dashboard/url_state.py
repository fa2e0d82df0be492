"""The view in the URL: what a page shows (model, run, scorer, concept, m, threshold, edit, gallery window) lives in
its query string, so a link reproduces the view and the browser's Back button walks back through views.

Streamlit (1.67) pushes a browser history entry whenever a run changes ``st.query_params``, and on Back or Forward
reruns the page with that entry's query string. So a page, in each run:

1. calls ``incoming(page)`` before its widgets: the URL's values when they are news to the page (a link opened, Back
   or Forward pressed, a view carried over from another page), else ``{}`` (the widgets already hold the view);
2. seeds each widget from them (``seed``, ``seed_float``) just before drawing it;
3. calls ``publish(page, view)`` once, with what it shows (once: every change is one history entry).

What the researcher is looking at follows them from page to page: the ``SHARED`` values a page publishes (model, run,
concept, m, threshold, ...) are carried into the next page they open, also by the top navigation, whose links hold
no query string; the URL's own values come first. ``HISTORY_SCRIPT`` (installed by ``main``) keeps one browser
history entry per user action: Streamlit pushes one when the page changes and another when the page then publishes
its view, and one on a fresh page when its defaults are written into the URL.

Usage::

    wanted = url_state.incoming("gallery")
    url_state.seed("gal_size", wanted.get("m"), sizes)
    size = st.selectbox("Window size m", sizes, key="gal_size")
    url_state.publish("gallery", {"model": model, "m": size})
"""

import streamlit as st

from locolab.dashboard import common

_PUBLISHED = "_url_state_published"  # page -> the query this session last published there
_SHOWN, _ARRIVED = "_url_state_page", "_url_state_arrived"  # the page of the previous run; whether this one is new
_CARRIED = "_url_state_carried"  # the SHARED values the pages published last
# What follows the researcher across pages: the same names mean the same thing on every page that shows them.
SHARED = ("model", "run", "scorer", "family", "concept", "m", "window", "threshold", "level")

# Runs in the page (st.html with JavaScript allowed; it holds no stored text), once per browser tab: after a user
# action (a pointer press or a key) the first history push makes a new entry and later ones replace it, so that one
# action (a click that opens a page which then writes its view into the URL; a page's defaults written into a fresh
# page's URL; Back or Forward, after which Streamlit reruns the page) is one entry.
HISTORY_SCRIPT = """<script>
if (!window.locolabHistory) {
  window.locolabHistory = true;
  let made = true;  // the current entry was made since the last user action (the loaded page counts as one)
  const push = history.pushState.bind(history), replace = history.replaceState.bind(history);
  const acted = () => { made = false; };
  window.addEventListener("pointerdown", acted, true);
  window.addEventListener("keydown", acted, true);
  window.addEventListener("popstate", () => { made = true; });
  history.pushState = (state, title, url) => {
    if (made) return replace(state, title, url);
    made = true;
    return push(state, title, url);
  };
}
</script>"""


def note_page(page: str) -> None:
    """Called by ``main`` on every run with the page about to run (its URL path): whether the page was just
    arrived at decides what ``incoming`` returns."""
    st.session_state[_ARRIVED] = st.session_state.get(_SHOWN) != page
    st.session_state[_SHOWN] = page


def incoming(page: str) -> dict[str, str]:
    """The URL's query parameters, unless this page published them itself in its previous run (then ``{}``); on
    arriving from another page, completed with the ``SHARED`` values carried from the pages published before.

    Arriving from another page counts as news even when the URL is this page's own: Streamlit forgets a page's
    widget values when it is left, so Back to it must restore them from the URL."""
    query = st.query_params.to_dict()
    if st.session_state.get(_ARRIVED, True):
        return carried(st.session_state.get(_CARRIED, {}), query)
    return {} if query == st.session_state.get(_PUBLISHED, {}).get(page) else query


def carried(shared: dict[str, str], query: dict[str, str]) -> dict[str, str]:
    """The view a page arrived at shows: the URL's ``query``, completed with the ``shared`` values it lacks (a concept
    travels as its family and name together, never one of them alone)."""
    if "family" in query or "concept" in query:
        shared = {name: value for name, value in shared.items() if name not in ("family", "concept")}
    return {**shared, **query}


def last(name: str) -> str | None:
    """The ``SHARED`` value ``name`` the pages published last (None: none yet)."""
    return st.session_state.get(_CARRIED, {}).get(name)


def unknown(wanted: dict[str, str], name: str, known, what: str) -> None:
    """A visible notice when the URL itself (not a value carried from another page) names a ``what`` (run, edit,
    concept) that the root does not have, so that a stale link does not fall back silently."""
    value = wanted.get(name)
    if value is not None and st.query_params.get(name) == value and value not in {str(k) for k in known}:
        st.warning(f"This link names {what} “{common.escape(value[:200])}”, which this artifact root does not "
                   "have: showing another instead.")



def seed(key: str, value: str | None, options) -> bool:
    """Set widget ``key`` (before it is drawn) to the option whose text is ``value``; an absent or unknown value
    changes nothing. Returns whether it was set."""
    if value is None:
        return False
    match = next((option for option in options if str(option) == value), None)
    if match is None:
        return False
    st.session_state[key] = match
    return True


def default(key: str, value) -> None:
    """Give widget ``key`` its default through the session state rather than the widget's own ``index`` or
    ``value`` (Streamlit warns when a widget has both a default and a value set by ``seed``)."""
    if key not in st.session_state:
        st.session_state[key] = value


def seed_float(key: str, value: str | None, low: float, high: float, step: float | None = None) -> bool:
    """Set a number widget ``key`` to ``value`` when it parses and lies in [low, high] (rounded to ``step``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    if not low <= number <= high:
        return False
    st.session_state[key] = round(round(number / step) * step, 10) if step else number
    return True


def concept_params(key: tuple[str, str] | None) -> dict[str, str]:
    """A (family, concept) pair as query parameters."""
    return {} if key is None else {"family": key[0], "concept": key[1]}


def wanted_concept(wanted: dict[str, str]) -> tuple[str, str] | None:
    """The (family, concept) pair a URL names, if it names one."""
    return (wanted["family"], wanted["concept"]) if "family" in wanted and "concept" in wanted else None


def link(view: dict) -> dict[str, str]:
    """``view`` as query parameters: values as text, None left out."""
    return {name: str(value) for name, value in view.items() if value is not None}


def publish(page: str, view: dict) -> None:
    """Put ``view`` (name -> value; None left out) in the URL: a new history entry when it differs from the URL."""
    query = link(view)
    st.session_state.setdefault(_PUBLISHED, {})[page] = query
    st.session_state.setdefault(_CARRIED, {}).update({name: query[name] for name in SHARED if name in query})
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)
