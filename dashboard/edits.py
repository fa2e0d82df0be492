"""Stored edits: each ``edits/<edit_id>/edit.json`` record (compute/edit_store.py) with its evaluations' ``eval.json``
summaries (compute/edit_eval.py: one per set of evaluation settings, ``evals/<eval_id>/``, plus the single
``eval.json`` of edits evaluated before evaluations had ids), read without loading any tensors."""

import json
import os

from contract.names import EDIT_EVALS, EDIT_RECORD, EDIT_SUMMARY, EDITS_DIR, renamed_metrics


def read_edits(root: str) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every edit under ``root/edits``, newest first. Each record carries its evaluations under ``"evals"``, newest
    first (each summary with its ``eval_id``, None for an evaluation from before ids), and the newest under
    ``"eval"`` (None before evaluation).

    Returns:
        (records, skipped): skipped holds (path, reason) for each unreadable or foreign record or summary.
    """
    directory = os.path.join(root, EDITS_DIR)
    records, skipped = [], []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.startswith(".") or not os.path.isdir(os.path.join(directory, name)):  # an edit being written
            continue
        record = _read_json(os.path.join(directory, name, EDIT_RECORD), skipped)
        if record is None:
            continue
        if record.get("edit_id") != name or not isinstance(record.get("method"), str):
            skipped.append((os.path.join(directory, name, EDIT_RECORD), "not a LocoLab edit record"))
            continue
        record["evals"] = _evaluations(os.path.join(directory, name), skipped)
        record["eval"] = record["evals"][0] if record["evals"] else None
        records.append(record)
    records.sort(key=lambda r: str(r.get("created_at", "")), reverse=True)
    return records, skipped


def _evaluations(folder: str, skipped: list) -> list[dict]:
    """The summaries of one edit's evaluations, newest first."""
    found = []
    legacy = os.path.join(folder, EDIT_SUMMARY)
    if os.path.exists(legacy):
        summary = _read_json(legacy, skipped)
        if summary is not None:
            found.append({**renamed_metrics(summary), "eval_id": None})
    evals = os.path.join(folder, EDIT_EVALS)
    for eval_id in sorted(os.listdir(evals)) if os.path.isdir(evals) else []:
        path = os.path.join(evals, eval_id, EDIT_SUMMARY)
        if eval_id.startswith(".") or not os.path.exists(path):  # being written, or interrupted before its summary
            continue
        summary = _read_json(path, skipped)
        if summary is None:
            continue
        if summary.get("eval_id") != eval_id:
            skipped.append((path, "not the summary of this evaluation"))
            continue
        found.append(renamed_metrics(summary))
    return sorted(found, key=lambda s: str(s.get("created_at", "")), reverse=True)


def _read_json(path: str, skipped: list) -> dict | None:
    try:
        with open(path, encoding="utf-8") as file:
            value = json.load(file)
    except FileNotFoundError:
        skipped.append((path, "missing"))
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        skipped.append((path, f"unreadable JSON: {error}"))
        return None
    if not isinstance(value, dict):
        skipped.append((path, "not a JSON object"))
        return None
    return value
