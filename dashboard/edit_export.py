"""Portable exports of an edit on the Edits page: a button runs ``locolab export-edit`` (a separate process: the
dashboard never imports torch) into a temporary folder outside the root, and offers that folder as a zip (a LoRA
for ``pipe.load_lora_weights``, the edited pipeline's ``save_pretrained`` folder, or the edit's own safetensors,
each with its edit card). Nothing is written into the root, so read-only roots export too."""

import io
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import streamlit as st

from locolab.contract.names import EDIT_METHODS
from locolab.contract.store import is_url
from locolab.dashboard import common, exports

REPO = Path(__file__).resolve().parents[1]
FORMATS = {"lora": "LoRA (pipe.load_lora_weights)", "diffusers": "diffusers pipeline folder (save_pretrained)",
           "safetensors": "the edit's own safetensors"}
MAX_ZIP_BYTES = 2 * 1024 ** 3  # a larger export (a full pipeline of a real model) is for the command line
TIMEOUT_S = 1800  # loading a real model and saving its pipeline takes minutes
_ONE_AT_A_TIME = threading.Lock()  # an export loads a model: two at once could exhaust the server's memory


def unavailable(record: dict) -> dict[str, str]:
    """{format: why not} for the formats that cannot hold ``record``'s edit."""
    method = EDIT_METHODS.get(record.get("method"))
    if method is not None and method.holds_units:
        why = ("a neuron edit clamps activations during generation rather than changing weights: only its own "
               "format (applied by locolab.compute.applied) holds it")
        return {"lora": why, "diffusers": why}
    if method is not None and method.text_encoder:
        return {"lora": "the edit changes the text encoder; a LoRA here holds the denoiser's weights only"}
    return {}


def command(root: str, edit_id: str, fmt: str, out: str) -> list[str]:
    """The ``export-edit`` command line (also shown to the user, to run it elsewhere)."""
    return ["locolab", "export-edit", edit_id, "--format", fmt, "--out", out, "--artifacts", root]


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent).as_posix(),
                              zipfile.ZIP_STORED if path.suffix == ".safetensors" else zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def export_zip(root: str, edit_id: str, fmt: str, timeout: float = TIMEOUT_S) -> tuple[bytes | None, str]:
    """Export ``edit_id`` of the local root ``root`` as ``fmt`` in a temporary folder and zip it.

    Returns:
        (the zip, a line saying what it holds) or (None, why not: the command's own error line).
    """
    if not _ONE_AT_A_TIME.acquire(blocking=False):
        return None, "another export is running on this server: try again when it has finished"
    try:
        with tempfile.TemporaryDirectory(prefix="locolab-export-") as tmp:
            out = Path(tmp) / f"{edit_id}-{fmt}"
            args = [sys.executable, "-m", *command(os.path.abspath(root), edit_id, fmt, str(out))]
            try:
                done = subprocess.run(args, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      timeout=timeout)
            except subprocess.TimeoutExpired:
                return None, f"the export did not finish within {timeout:g} s: run it on the command line"
            if done.returncode != 0:
                lines = (done.stderr or done.stdout).strip().splitlines()
                return None, lines[-1] if lines else f"the export failed (exit code {done.returncode})"
            size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
            if size > MAX_ZIP_BYTES:
                return None, (f"the export holds {size / 1024 ** 3:.1f} GiB, more than the "
                              f"{MAX_ZIP_BYTES / 1024 ** 3:.0f} GiB a download here offers: run it on the command line")
            return _zip(out), done.stdout.strip().splitlines()[-1]
    finally:
        _ONE_AT_A_TIME.release()


def offer(root: str, record: dict, key: str) -> None:
    """A format picker and a button that makes the export, then its zip's download button."""
    edit_id = record["edit_id"]
    refused = unavailable(record)
    shown = [fmt for fmt in FORMATS if fmt not in refused]
    with st.expander("Export for diffusers (LoRA, pipeline folder or safetensors, with the edit card)",
                     icon=":material/ios_share:"):
        fmt = st.radio("Format", shown, key=f"{key}_format", format_func=FORMATS.get)
        for name, why in refused.items():
            st.caption(common.escape(f"No {name}: {why}."))
        where = f"{key}_{edit_id}_{fmt}"
        if is_url(root):
            st.caption("This root is an object store: export from the command line:")
        elif st.button("Make the export", key=f"{key}_make"):
            with st.spinner(f"Running locolab export-edit {edit_id} --format {fmt} ..."):
                st.session_state[where] = export_zip(root, edit_id, fmt)
        made, line = st.session_state.get(where, (None, None))
        if made is not None:
            st.caption(common.escape(line))
            st.download_button(f"Download {fmt} export (zip)", made, file_name=f"{edit_id}-{fmt}.zip",
                               mime=exports.MIME["zip"], key=f"{key}_download", icon=":material/download:")
        elif line:
            st.error(common.escape(line))
        st.code(shlex.join(command(root, edit_id, fmt, f"{edit_id}-{fmt}")), language="bash")
