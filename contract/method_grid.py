"""Localization x editor: every evaluated edit of one concept as a cell of the grid editor x {localized window, all
layers} (the text encoder for DiffQuickFix), each with the evaluation battery's headline numbers and their intervals.
``make compare``'s table (compute/edit/battery_report.py) and the dashboard's "Methods compared" page both read it
from here."""

import json

from locolab.contract.names import EDIT_METHODS, EDIT_RECORD, EDIT_SUMMARY, EDITS_DIR, METHODS, eval_folder
from locolab.contract.notation import layers_text
from locolab.contract.store import exists, join, read_bytes

LOCALIZED, ALL_LAYERS, TEXT_ENCODER = "localized window", "all layers", "text encoder"
SCOPES = (LOCALIZED, ALL_LAYERS, TEXT_ENCODER)
# An editor is a method less where it acts: LocoEdit's closed form on every layer is the method ``all-layers``.
EDITOR_OF = {"all-layers": "loco"}


def read_evaluations(root: str, pairs: list[tuple[str, str]]) -> list[tuple[dict, dict]]:
    """(edit record, evaluation summary) of each pair whose summary exists, read from the root's JSON files."""
    found = []
    for edit_id, eval_id in pairs:
        path = join(root, f"{eval_folder(edit_id, eval_id)}/{EDIT_SUMMARY}")
        if exists(path):
            found.append((json.loads(read_bytes(join(root, f"{EDITS_DIR}/{edit_id}/{EDIT_RECORD}"))),
                          json.loads(read_bytes(path))))
    return found


def stored_evaluations(records: list[dict], pairs: list[tuple[str, str]]) -> list[tuple[dict, dict]]:
    """(edit record, evaluation summary) of each pair from records already read, each carrying its summaries under
    ``"evals"`` (the dashboard's ``edit_records.read_edits``)."""
    by_id = {record["edit_id"]: record for record in records}
    found = []
    for edit_id, eval_id in pairs:
        summary = next((s for s in by_id.get(edit_id, {}).get("evals", []) if s.get("eval_id") == eval_id), None)
        if summary is not None:
            found.append((by_id[edit_id], summary))
    return found


def where(record: dict) -> str:
    """Where an edit acts: "all" layers, its layers in the one window notation ("layers 8–9"), or the text
    encoder."""
    layers = record.get("layers")
    if not layers:
        return "text enc." if "modules" in record else "-"
    if len(layers) == record.get("num_layers"):
        return "all"
    return layers_text(layers)


def scope(record: dict) -> str:
    """``ALL_LAYERS``, ``LOCALIZED`` (some layers) or ``TEXT_ENCODER``."""
    method = EDIT_METHODS.get(record.get("method"))
    if (method is not None and method.text_encoder) or (not record.get("layers") and "modules" in record):
        return TEXT_ENCODER
    return ALL_LAYERS if where(record) == "all" else LOCALIZED


def interval(value: float | None, low: float | None, high: float | None, signed: bool = False,
             digits: int = 2) -> str:
    """``value [low, high]``, or ``n/a`` when not measured."""
    if value is None:
        return "n/a"
    form = f"{'+' if signed else ''}.{digits}f"
    return f"{value:{form}} [{low:{form}}, {high:{form}}]"


def cell(record: dict, summary: dict) -> dict:
    """One evaluated edit's headline numbers: whether the concept was removed, its rate before -> after with the
    change's interval (efficacy), the flags and the worst other rate change (specificity), paired preservation
    (1 - SSIM, CLIP distance, share changed, each with its interval), CMMD with its p-value and the recovery attack
    (``under_attack``)."""
    battery = summary["battery"]
    measured = [row for row in battery["detection"] if row["units"]]
    edited = [row for row in measured if row["group"] == "concept" and row["role"] == "efficacy"]
    others = [row for row in measured if row["role"] == "specificity"]
    worst = min(others, key=lambda row: row["change_high"], default=None)
    kept, shift = battery.get("preservation") or {}, battery.get("cmmd") or {}

    def mean(name: str, digits: int = 3) -> str:
        stat = kept.get(name)
        return interval(stat["mean"], stat["low"], stat["high"], digits=digits) if stat else "n/a"

    changed = kept.get("changed") or {}
    return {
        "editor": EDITOR_OF.get(record["method"], record["method"]), "scope": scope(record),
        "method": record["method"], "layers": where(record), "edit": record["edit_id"],
        "eval": summary.get("eval_id"), "removed": {True: "yes", False: "no", None: "n/a"}[battery["effective"]],
        "concept rate": f"{edited[0]['before']:.2f} -> {edited[0]['after']:.2f}" if edited else "n/a",
        "efficacy": interval(*(edited[0][k] for k in ("change", "change_low", "change_high")), signed=True)
        if edited else "n/a",
        "flags": len(battery["flags"]),
        "worst other change": (f"{worst['group']} {worst['attribute']} "
                               + interval(worst["change"], worst["change_low"], worst["change_high"], signed=True))
        if worst else "n/a",
        "1 - SSIM": mean("ssim_distance"), "CLIP distance": mean("clip_distance"),
        "changed": interval(changed.get("share"), changed.get("low"), changed.get("high")),
        "CMMD (p)": f"{shift['value']:.3g} ({shift['p_value']:.3f})" if shift else "n/a",
        "under attack": under_attack(battery.get("attack")),
    }


def under_attack(attack: dict | None) -> str:
    """The recovery attack in a cell: the concept's first detector's rate under attack and whether the concept came
    back (``back``), ``kept`` or ``n/a`` (the edit removed nothing); ``-`` where no attack ran."""
    if not attack:
        return "-"
    rate = f"{attack['rows'][0]['attacked']:.2f} " if attack["rows"] else ""
    return rate + {True: "back", False: "kept", None: "n/a"}[attack["recovered"]]


def cells(found: list[tuple[dict, dict]]) -> list[dict]:
    """``cell`` of each (record, summary) with a battery, in method order (``METHODS``), then by edit id."""
    order = {method: i for i, method in enumerate(METHODS)}
    found = sorted((pair for pair in found if "battery" in pair[1]),
                   key=lambda pair: (order.get(pair[0]["method"], len(order)), pair[0]["edit_id"]))
    return [cell(record, summary) for record, summary in found]


def grid(rows: list[dict], measure: str) -> list[dict]:
    """The grid editor x scope of one headline number of ``cells`` (``measure``: a key of a cell): one row per
    editor, one column per scope that has a cell; several edits in one cell are joined with `` | ``."""
    shown = [s for s in SCOPES if any(row["scope"] == s for row in rows)]
    table = {}
    for row in rows:
        line = table.setdefault(row["editor"], {"editor": row["editor"], **{s: "" for s in shown}})
        line[row["scope"]] = " | ".join(filter(None, (line[row["scope"]], str(row[measure]))))
    return list(table.values())
