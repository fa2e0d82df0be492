"""Stored edits: each ``edits/<edit_id>/edit.json`` record (compute/edit/store.py) with its evaluations' ``eval.json``
summaries (compute/edit/evaluation.py: one per set of evaluation settings, ``evals/<eval_id>/``, plus the single
``eval.json`` of edits evaluated before evaluations had ids), read without loading any tensors."""

import json

from locolab.contract.names import EDIT_EVALS, EDIT_RECORD, EDIT_SUMMARY, EDITS_DIR, renamed_metrics
from locolab.dashboard.files import RootFiles


def read_edits(root: str) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every edit under ``root/edits`` (a local folder or an object store), newest first. Each record carries its
    evaluations under ``"evals"``, newest first (each summary with its ``eval_id``, None for an evaluation from before
    ids), and the newest under ``"eval"`` (None before evaluation).

    Returns:
        (records, skipped): skipped holds (path, reason) for each unreadable or foreign record or summary.
    """
    where = RootFiles(root)
    records, skipped = [], []
    for name in where.folders(EDITS_DIR):
        if name.startswith("."):  # an edit being written
            continue
        if where.url and EDIT_RECORD not in where.names(f"{EDITS_DIR}/{name}"):
            continue  # on an object store, an edit being written: its record is stored last
        record = _read_json(where, f"{EDITS_DIR}/{name}/{EDIT_RECORD}", skipped)
        if record is None:
            continue
        if record.get("edit_id") != name or not isinstance(record.get("method"), str):
            skipped.append((where.shown(f"{EDITS_DIR}/{name}/{EDIT_RECORD}"), "not a LocoLab edit record"))
            continue
        record["evals"] = _evaluations(where, f"{EDITS_DIR}/{name}", skipped)
        record["eval"] = record["evals"][0] if record["evals"] else None
        records.append(record)
    records.sort(key=lambda r: str(r.get("created_at", "")), reverse=True)
    return records, skipped


def _evaluations(where: RootFiles, folder: str, skipped: list) -> list[dict]:
    """The summaries of one edit's evaluations, newest first."""
    found = []
    if EDIT_SUMMARY in where.names(folder):
        summary = _read_json(where, f"{folder}/{EDIT_SUMMARY}", skipped)
        if summary is not None:
            found.append({**renamed_metrics(summary), "eval_id": None})
    for eval_id in where.folders(f"{folder}/{EDIT_EVALS}"):
        path = f"{folder}/{EDIT_EVALS}/{eval_id}/{EDIT_SUMMARY}"
        if eval_id.startswith(".") or not where.exists(path):  # being written, or interrupted before its summary
            continue
        summary = _read_json(where, path, skipped)
        if summary is None:
            continue
        if summary.get("eval_id") != eval_id:
            skipped.append((where.shown(path), "not the summary of this evaluation"))
            continue
        found.append(renamed_metrics(summary))
    return sorted(found, key=lambda s: str(s.get("created_at", "")), reverse=True)


def _read_json(where: RootFiles, relpath: str, skipped: list) -> dict | None:
    try:
        value = json.loads(where.read(relpath))
    except FileNotFoundError:
        skipped.append((where.shown(relpath), "missing"))
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        skipped.append((where.shown(relpath), f"unreadable JSON: {error}"))
        return None
    if not isinstance(value, dict):
        skipped.append((where.shown(relpath), "not a JSON object"))
        return None
    return value
