"""Edit folders: ``<root>/edits/<edit_id>/`` with ``edit.json`` (the record) and the changed tensors only.

``weights.safetensors`` holds a weight edit's new parameters by name qualified by pipeline component
(``unet.<...>.attn2.to_k.weight``, ``text_encoder.<...>.out_proj.weight``; older edits' bare names are the UNet's,
see ``edit.qualified``); ``units.safetensors`` holds a neuron edit's ``<module>.indices`` (int64) and
``<module>.values``. On a filesystem the folder is written to a temporary sibling and renamed into place, so a
failed edit leaves nothing behind. An object store (an ``s3://`` root) has no folders to rename: each file is stored
whole in one request (``store.atomic_write``), the tensors first and ``edit.json`` last, so an edit exists (and
readers list it) once its record does. Tensors are never pickled.
"""

import json
import os
import re
from pathlib import Path

from safetensors.torch import load, save

from locolab.compute.atomic import atomic_dir
from locolab.compute.edit.closed_form import Edit, qualified
from locolab.contract.errors import UserError
from locolab.contract.names import EDIT_RECORD, EDIT_UNITS, EDIT_WEIGHTS, EDITS_DIR
from locolab.contract.store import atomic_write, exists, is_url, join, read_bytes, resolve_root

# What a full edit record holds for its evaluation to be made (``make_request`` writes them all).
RECORD_KEYS = ("edit_id", "model", "family", "concept", "method", "target", "source_prompts")


def edit_dir(root: str | os.PathLike | None, edit_id: str) -> str:
    """Where edit ``edit_id`` lives under the artifact root (``store.resolve_root``): a local path or a URL.

    Raises:
        UserError: ``edit_id`` is not an edit's name (it would point elsewhere, e.g. ``../x``).
    """
    if not re.fullmatch(r"[\w][\w.-]*", edit_id):
        raise UserError(f"{edit_id!r} is not an edit id (letters, digits, '.', '_', '-'): copy it from the edit's "
                        f"folder name under {EDITS_DIR}/")
    root = resolve_root(root)
    return join(root, f"{EDITS_DIR}/{edit_id}") if is_url(root) else str(Path(root) / EDITS_DIR / edit_id)


def edit_exists(root: str | os.PathLike | None, edit_id: str) -> bool:
    """Whether edit ``edit_id`` is stored under the root (its record is there)."""
    return exists(f"{edit_dir(root, edit_id)}/{EDIT_RECORD}")


def save_edit(root: str | os.PathLike | None, edit: Edit) -> str:
    """Write ``edit`` to its folder, atomically (see the module docstring); returns the folder."""
    path = edit_dir(root, edit.edit_id)
    files = {}
    if edit.weights:
        files[EDIT_WEIGHTS] = save({name: value.contiguous() for name, value in edit.weights.items()})
    if edit.units:
        tensors = {}
        for module, (indices, values) in edit.units.items():
            tensors[f"{module}.indices"] = indices.contiguous()
            tensors[f"{module}.values"] = values.contiguous()
        files[EDIT_UNITS] = save(tensors)
    # Last: on an object store the edit appears when its record does.
    files[EDIT_RECORD] = json.dumps(edit.meta, indent=2).encode()
    if is_url(path):
        for name, data in files.items():
            atomic_write(f"{path}/{name}", lambda file, data=data: file.write(data))
        return path
    with atomic_dir(path) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return path


def load_edit(root: str | os.PathLike | None, edit_id: str, required: tuple[str, ...] = ("edit_id",)) -> Edit:
    """Read edit ``edit_id`` back (tensors on the CPU).

    Args:
        required: record keys the caller needs (``RECORD_KEYS`` to evaluate it).

    Raises:
        UserError: no such edit, or its record or tensors do not read back (naming the fix).
    """
    path = edit_dir(root, edit_id)
    parent = path.rsplit("/", 1)[0] if is_url(path) else str(Path(path).parent)
    if not edit_exists(root, edit_id):
        raise UserError(f"no edit {edit_id!r} under {parent}: check the id and --artifacts")
    damaged = (f"edit {edit_id} under {parent} is damaged ({{}}): run `locolab verify --repair` to set it "
               "aside, then make the edit again")

    def tensors(name: str) -> dict:
        where = f"{path}/{name}"
        return load(read_bytes(where)) if exists(where) else {}

    try:
        meta = json.loads(read_bytes(f"{path}/{EDIT_RECORD}").decode("utf-8"))
        weights, units_file = tensors(EDIT_WEIGHTS), tensors(EDIT_UNITS)
    except (UnicodeDecodeError, ValueError) as error:
        raise UserError(damaged.format(f"{type(error).__name__}: {str(error).splitlines()[0]}")) from None
    except Exception as error:  # safetensors reports a cut-off or garbled file with its own error type
        if isinstance(error, OSError):
            raise
        raise UserError(damaged.format(f"unreadable tensors: {error}")) from None
    problem = edit_record_problem(meta, edit_id, required)
    if problem:
        raise UserError(damaged.format(problem))
    weights = {qualified(name): value for name, value in weights.items()}
    units = {}
    for name in units_file:
        module, kind = name.rsplit(".", 1)
        if kind == "indices":
            if f"{module}.values" not in units_file:
                raise UserError(damaged.format(f"{module}.values missing from {EDIT_UNITS}"))
            units[module] = (units_file[name], units_file[f"{module}.values"])
    return Edit(meta, weights, units)


def edit_record_problem(meta, edit_id: str, required: tuple[str, ...] = ("edit_id",)) -> str | None:
    """Why an ``edit.json`` is not this edit's record, or lacks one of the ``required`` keys (``RECORD_KEYS``: what
    an evaluation reads), or None."""
    if not isinstance(meta, dict):
        return f"{EDIT_RECORD} holds {type(meta).__name__}, not an object"
    missing = [key for key in required if key not in meta]
    if missing:
        return f"{EDIT_RECORD} lacks {', '.join(missing)}"
    if meta["edit_id"] != edit_id:
        return f"{EDIT_RECORD} names edit {meta['edit_id']!r}"
    return None
