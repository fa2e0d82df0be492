"""What every page shares: the root in use, its snapshot, the warnings about it, and image cells."""

import os

import streamlit as st

from dashboard import data, queries
from dashboard.root import inside

ROOT_KEY, SOURCE_KEY, OPTIONS_KEY = "artifact_root", "artifact_root_source", "launch_options"


def root() -> str:
    """The artifact root chosen in ``main``."""
    return st.session_state[ROOT_KEY]


def snapshot() -> data.Snapshot:
    return data.snapshot(root())


def show_problems(snap: data.Snapshot) -> None:
    """A warning naming every skipped file; an error (and the page stops) when the root cannot be read."""
    if snap.skipped:
        names = "\n".join(f"- `{os.path.relpath(path, snap.root)}`: {reason}" for path, reason in snap.skipped)
        st.warning(f"Skipped {len(snap.skipped)} unreadable or foreign file(s):\n{names}")
    if snap.error:
        st.error(snap.error)
        st.stop()


def require_results(snap: data.Snapshot) -> None:
    """Explain how to produce results, and stop the page, when the root holds no sweep results."""
    if not data.query(snap, queries.models):
        explain_empty(snap.root)
        st.stop()


def explain_empty(path: str) -> None:
    st.info(f"No sweep results in `{os.path.abspath(path)}` yet. Produce some, then reload this page:")
    st.code("make demo                                            # tiny built-in model, a minute on a CPU\n"
            "make sweep CONFIG=compute/configs/tiny-sd1.yaml      # any sweep config\n"
            f"python -m compute sweep compute/configs/tiny-sd1.yaml --artifacts {path}", language="bash")


def image(relpath: str | None, caption: str) -> None:
    """One image from the root (never from outside it), or a note saying why it is missing."""
    path = inside(root(), relpath) if relpath else None
    if path is None:
        st.caption(f"{caption}\n\n(no image{'' if not relpath else ': path leaves the artifact root'})")
        return
    try:
        st.image(path.read_bytes(), caption=caption, width="stretch")
    except OSError:  # missing, unreadable, or not an image (PIL's UnidentifiedImageError is an OSError)
        st.caption(f"{caption}\n\n(image missing or unreadable)")


def score_text(value) -> str:
    return "–" if value is None else f"{value:.4f}"
