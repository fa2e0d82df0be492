"""The evaluation battery of an edit (``eval.json``'s ``battery``, compute/edit/battery.py) on the Edits page: the
verdict, every detector's rate before/after per prompt group, paired preservation, CMMD and the most-changed image
pairs side by side; and one row per method for the comparison."""

import streamlit as st

from locolab.contract import method_grid
from locolab.contract.summaries import MIN_UNITS
from locolab.dashboard import common
from locolab.dashboard.gallery_grid import Row, grid_html, thumb_side
from locolab.dashboard.gallery_view import cell

BATTERY_HELP = ("Every detector reads every image before and after the edit (the same prompt and seed). A rate is "
                "the share of images showing what their prompt asks for; its change has Tango's paired interval "
                "(it excludes 0 exactly when McNemar's test rejects). Efficacy rows should fall; a specificity row "
                "whose interval lies below 0 is flagged (collateral damage). docs/method.md §4.2 defines each number.")


def _interval(row: dict, key: str, signed: bool = False) -> str:
    form = "+.2f" if signed else ".2f"
    return f"{row[key]:{form}} [{row[f'{key}_low']:{form}}, {row[f'{key}_high']:{form}}]"


def detection_rows(battery: dict) -> list[dict]:
    """The detection table: one row per prompt group and detector with images, before/after rate and change (each
    with its interval), the share kept, and whether the row is flagged."""
    return [{"group": row["group"], "attribute": row["attribute"], "role": row["role"], "images": row["units"],
             "before": _interval(row, "before"), "after": _interval(row, "after"),
             "change": _interval(row, "change", signed=True), "kept": round(row["kept"], 2),
             "flag": "⚠" if row["role"] == "specificity" and row["change_high"] < -1e-9 else "",
             "detector": row["detector"]}
            for row in battery["detection"] if row["units"]]


def few_units(battery: dict) -> str | None:
    """A warning when detection rows rest on fewer than ``MIN_UNITS`` images (their intervals cover less than their
    level), else None."""
    few = [f"{row['group']} {row['attribute']} ({row['units']})" for row in battery["detection"]
           if 0 < row["units"] < MIN_UNITS]
    if not few:
        return None
    return (f"Few images: {', '.join(few)}. A rate's interval from fewer than {MIN_UNITS} images covers less than "
            "its level: evaluate with more seeds or prompts before reading a change as real.")


def verdict(battery: dict) -> tuple[str, str]:
    """(kind, text): ``error`` when flagged, ``success`` when effective and not flagged, else ``info``."""
    edited = battery["edited"]
    removed = {True: "fell", False: "did not fall significantly", None: "was not measured"}[battery["effective"]]
    text = f"The {edited['attribute']} rate of {edited['label']!r} on its prompts {removed}. "
    if battery["flags"]:
        return "error", text + "Flagged: " + "; ".join(battery["flags"])
    return ("success" if battery["effective"] else "info"), text + "No other rate fell (no collateral damage seen)."


def attack_rows(battery: dict) -> list[dict]:
    """The recovery attack's table: per detector of the concept, its rate before the edit, after it and under
    attack (each with its interval) and the paired change under attack - after."""
    return [{"attribute": row["attribute"], "images": row["units"], "before edit": _interval(row, "before"),
             "after edit": _interval(row, "after"), "under attack": _interval(row, "attacked"),
             "raised by": _interval(row, "raised", signed=True), "detector": row["detector"]}
            for row in (battery.get("attack") or {}).get("rows", [])]


def attack_text(attack: dict) -> tuple[str, str]:
    """(kind, text) of the recovery attack's verdict: ``error`` when it brought the concept back."""
    settings = (f"Recovery attack ({attack['steps']} steps, {attack['tokens']} soft token(s); loss "
                f"{attack['loss_before']:.4g} → {attack['loss_after']:.4g}): ")
    if attack["recovered"] is None:
        return "info", settings + "the edit did not remove the concept, so there was nothing to recover."
    if attack["recovered"]:
        return "error", settings + ("the concept came back: under attack its rate is no longer below its rate "
                                    "before the edit.")
    return "success", settings + "the concept stayed removed: under attack its rate is still below its rate before."


def compare_row(record: dict, evaluation: dict) -> dict:
    """One method's battery in a row: removed, flags, 1 - SSIM and the share changed, CMMD and its p-value, and the
    recovery attack (``method_grid.under_attack``)."""
    battery = evaluation.get("battery") or {}
    kept, shift = battery.get("preservation") or {}, battery.get("cmmd") or {}
    return {"method": record.get("method"), "removed": battery.get("effective"), "flags": len(battery.get("flags", [])),
            "1 − SSIM": kept.get("ssim_distance", {}).get("mean"), "changed": kept.get("changed", {}).get("share"),
            "CMMD": shift.get("value"), "CMMD p": shift.get("p_value"),
            "under attack": method_grid.under_attack(battery.get("attack")), "edit": record.get("edit_id")}


def preservation_rows(battery: dict) -> list[dict]:
    """Paired preservation and distribution shift: one row per number, with its interval and what it measures."""
    kept, shift = battery["preservation"], battery.get("cmmd") or {}
    where = f"{kept['units']} images of {' + '.join(kept['groups'])}, each against the same seed before the edit"
    changed = kept["changed"]
    rows = [{"measure": "CLIP distance", "value": round(kept["clip_distance"]["mean"], 3),
             "interval": f"[{kept['clip_distance']['low']:.3f}, {kept['clip_distance']['high']:.3f}]",
             "of": where + ": mean 1 − cosine of the scorer's image embeddings"},
            {"measure": "1 − SSIM", "value": round(kept["ssim_distance"]["mean"], 3),
             "interval": f"[{kept['ssim_distance']['low']:.3f}, {kept['ssim_distance']['high']:.3f}]", "of": where},
            {"measure": f"changed ({changed['threshold']})", "value": round(changed["share"], 2),
             "interval": f"[{changed['low']:.2f}, {changed['high']:.2f}]",
             "of": f"{changed['count']} of {kept['units']} images"}]
    if shift:
        rows.append({"measure": "CMMD", "value": round(shift["value"], 3),
                     "interval": f"permutation p = {shift['p_value']:.3f}",
                     "of": f"{shift['units']} pairs, before vs after (CLIP embeddings of {shift['embedding']})"})
    return rows


def show(result: dict | None) -> None:
    """The battery of one evaluation, or a note when it has none (evaluated before the battery)."""
    battery = (result or {}).get("battery")
    if not battery:
        st.caption("This evaluation has no battery (evaluated before it existed): evaluate the edit again.")
        return
    kind, text = verdict(battery)
    getattr(st, kind)(common.escape(text))
    st.dataframe(detection_rows(battery), hide_index=True, width="stretch", column_config={
        "change": st.column_config.TextColumn("change", help=BATTERY_HELP),
        "kept": st.column_config.NumberColumn("kept", help="share of images whose label the edit left as it was")})
    if battery.get("attack"):
        kind, text = attack_text(battery["attack"])
        getattr(st, kind)(common.escape(text))
        st.dataframe(attack_rows(battery), hide_index=True, width="stretch")
    warning = few_units(battery)
    if warning:
        st.warning(common.escape(warning))
    kept = battery.get("preservation") or {}
    if kept:
        st.dataframe(preservation_rows(battery), hide_index=True, width="stretch")
        snap, pairs = common.snapshot(), kept["most_changed"]
        side = thumb_side(2 * len(pairs))
        st.html(grid_html(["before", "after"], [
            Row(f"“{pair['prompt']}” · seed {pair['seed']} · {pair['group']}",
                [cell(snap, {"image_path": pair[f"{when}_image"]}, when, side) for when in ("before", "after")],
                f"SSIM {pair['ssim']:.3f} · CLIP distance {pair['clip_distance']:.3f}") for pair in pairs],
            "Most-changed pairs (preservation set, lowest SSIM first)"))
    with st.expander("Detectors, skipped detectors and warnings"):
        st.json({"detectors": battery["detectors"], "skipped": battery["skipped_detectors"],
                 "skipped metrics": battery.get("skipped_metrics", []),
                 "warnings": battery["warnings"], "metric versions": battery["metric_versions"]}, expanded=False)
