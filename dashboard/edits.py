"""Stored edits: each ``edits/<edit_id>/edit.json`` record (compute/edit_store.py) with its ``eval.json`` summary
(compute/edit_eval.py), read without loading any tensors."""

import json
import os

from contract.names import EDIT_RECORD, EDIT_SUMMARY, EDITS_DIR, EVAL_RENAMED


def read_edits(root: str) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every edit under ``root/edits``, newest first, each record with its summary under ``"eval"`` (None before
    evaluation).

    Returns:
        (records, skipped): skipped holds (path, reason) for each unreadable or foreign record.
    """
    directory = os.path.join(root, EDITS_DIR)
    records, skipped = [], []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.startswith("."):  # an edit being written (compute/atomic.py)
            continue
        record = _read_json(os.path.join(directory, name, EDIT_RECORD), skipped)
        if record is None:
            continue
        if record.get("edit_id") != name or "method" not in record:
            skipped.append((os.path.join(directory, name, EDIT_RECORD), "not a LocoLab edit record"))
            continue
        summary_path = os.path.join(directory, name, EDIT_SUMMARY)
        record["eval"] = _renamed(_read_json(summary_path, skipped)) if os.path.exists(summary_path) else None
        records.append(record)
    records.sort(key=lambda r: str(r.get("created_at", "")), reverse=True)
    return records, skipped


def _renamed(summary: dict | None) -> dict | None:
    """A summary written before the metrics were renamed, read under the current names (same definitions)."""
    if summary is None:
        return None
    return {EVAL_RENAMED.get(key, key): value for key, value in summary.items()}


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
