"""``--status-file``: a command reports its stage, progress and result to a small JSON file, which a launcher (the
dashboard's jobs) reads instead of parsing printed output. Without the option nothing is written.

The file holds one object, rewritten atomically at each report: ``command``, ``stage``, ``done``/``total`` (work
items of the stage, e.g. images), ``samples`` (``[time, done]`` at the stage's start and at each advance, the last
``MAX_SAMPLES``: what a launcher's time-left estimate is fitted to) and ``result`` (what the command produced, e.g.
``{"edit_id": ...}``); the keys are defined in ``contract.names.JOB_STATUS_KEYS``.
"""

import json
import os
import time

from locolab.contract.errors import UserError
from locolab.contract.store import atomic_write

MAX_SAMPLES = 200
_state: dict = {}
_path: str | None = None


def report_to(path: str | None, command: str) -> None:
    """Send this process's reports to ``path`` (None: report nowhere). The file is replaced at every report, so
    an existing ``path`` must be a regular file (a device, pipe or folder would be replaced by one)."""
    global _path
    if path and os.path.exists(path) and not os.path.isfile(path):
        raise UserError(f"--status-file {path} exists and is not a regular file (a device, pipe or folder, which a "
                        "report would replace): name a file")
    _path = path
    _state.clear()
    _state.update(command=command, stage="starting", done=0, total=0, result={}, started_at=time.time())
    _write()


def report(stage: str | None = None, done: int | None = None, total: int | None = None, **result) -> None:
    """Update the stage and progress, and add ``result`` entries; written at once."""
    if stage is not None and stage != _state.get("stage"):
        began = time.time()
        _state.update(stage=stage, done=0, total=0, stage_started_at=began, samples=[[began, 0]])
    if done is not None and done != _state.get("done"):
        _state["done"] = done
        _state["samples"] = [*_state.get("samples", []), [time.time(), done]][-MAX_SAMPLES:]
    if total is not None:
        _state["total"] = total
    _state.setdefault("result", {}).update(result)
    _write()


def baseline(done: int, total: int) -> None:
    """Start counting from ``done`` of ``total`` (e.g. a resumed sweep's finished images): the samples restart
    there, so work done before this process is not taken for work done at once."""
    _state.update(done=done, total=total, samples=[[time.time(), done]])
    _write()


def _write() -> None:
    if _path:
        atomic_write(_path, lambda file: file.write(json.dumps(_state).encode()))
