"""The evaluation battery as text: one evaluation's table (``locolab eval-edit``) and every method's evaluation of one
concept side by side (``python -m compute.edit.battery_report``, which ``make compare`` runs last)."""

import argparse
import json

from locolab.contract.errors import UserError
from locolab.contract.names import EDIT_RECORD, EDIT_SUMMARY, EDITS_DIR, METHODS, eval_folder
from locolab.contract.notation import layers_text
from locolab.contract.store import Store, exists, join, read_bytes, resolve_root


def _rate(row: dict, key: str) -> str:
    return f"{row[key]:.2f} [{row[f'{key}_low']:.2f}, {row[f'{key}_high']:.2f}]"


def _change(row: dict) -> str:
    return f"{row['change']:+.2f} [{row['change_low']:+.2f}, {row['change_high']:+.2f}]"


def table_lines(battery: dict) -> list[str]:
    """One evaluation's battery: the detection table (group, attribute, role, images, rate before -> after, the
    change with its interval, ``!`` where a specificity rate fell), then preservation, CMMD, verdict, skipped
    detectors and warnings."""
    level = f"{battery['level']:.0%}"
    detectors = ", ".join(f"{d['id']} v{d['version']}" for d in battery["detectors"])
    lines = [f"battery v{battery['version']} ({level} intervals; detectors {detectors}):",
             f"{'group':<15}{'attribute':<12}{'role':<6}{'images':>6}  {'before':<18}  {'after':<18}  "
             f"{'change':<22}  kept"]
    for row in battery["detection"]:
        if not row["units"]:
            continue
        mark = "!" if row["role"] == "specificity" and row["change_high"] < -1e-9 else " "
        lines.append(f"{row['group']:<15}{row['attribute'][:11]:<12}{row['role'][:4]:<6}{row['units']:>6}  "
                     f"{_rate(row, 'before'):<18}  {_rate(row, 'after'):<18}  {_change(row):<21}{mark}  "
                     f"{row['kept']:.2f}")
    kept = battery.get("preservation") or {}
    if kept:
        changed = kept["changed"]
        psnr = kept["psnr"]["median"]
        lines.append(f"preservation ({kept['units']} images of {' + '.join(kept['groups'])}, each against the same "
                     f"seed before): CLIP distance {_mean(kept['clip_distance'])}, 1 - SSIM "
                     f"{_mean(kept['ssim_distance'])}, changed ({changed['threshold']}) {changed['count']} = "
                     f"{changed['share']:.2f} [{changed['low']:.2f}, {changed['high']:.2f}], median PSNR "
                     + ("n/a (identical)" if psnr is None else f"{psnr:.1f} dB"))
    if battery.get("cmmd"):
        shift = battery["cmmd"]
        lines.append(f"distribution shift: CMMD {shift['value']:.3g} (permutation p = {shift['p_value']:.3f}, "
                     f"{shift['units']} pairs)")
    effective = {True: "yes", False: "no", None: "not measured"}[battery["effective"]]
    edited = battery["edited"]
    lines.append(f"verdict: {edited['label']} removed ({edited['attribute']} rate fell on its prompts): {effective}; "
                 + (f"FLAGGED, {len(battery['flags'])} rate(s) fell elsewhere (!)" if battery["flags"]
                    else "no collateral damage detected"))
    lines += [f"skipped detector {s['id']}: {s['reason']}" for s in battery["skipped_detectors"]]
    lines += [f"skipped metric {s['id']}: {s['reason']}" for s in battery.get("skipped_metrics", [])]
    lines += [f"warning: {w}" for w in battery["warnings"]]
    return lines


def _mean(stat: dict) -> str:
    return f"{stat['mean']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"


def _evaluations(root: str, model: str, family: str, concept: str) -> list[tuple[dict, dict]]:
    """(edit record, evaluation summary) of every evaluation with a battery of the concept's edits, by method."""
    con = Store(root).connect()
    pairs = con.execute("SELECT DISTINCT edit_id, eval_id FROM edit_scores WHERE model = ? AND family = ? AND "
                        "concept = ? AND eval_id IS NOT NULL ORDER BY 1, 2", [model, family, concept]).fetchall()
    found = []
    for edit_id, eval_id in pairs:
        path = join(root, f"{eval_folder(edit_id, eval_id)}/{EDIT_SUMMARY}")
        summary = json.loads(read_bytes(path)) if exists(path) else {}
        if "battery" in summary:
            found.append((json.loads(read_bytes(join(root, f"{EDITS_DIR}/{edit_id}/{EDIT_RECORD}"))), summary))
    order = {method: i for i, method in enumerate(METHODS)}
    return sorted(found, key=lambda pair: (order.get(pair[0]["method"], len(order)), pair[0]["edit_id"]))


def _layers(record: dict) -> str:
    """Where an edit acts: every layer, its layers ("layers 8–9"), or the text encoder."""
    layers = record.get("layers")
    if not layers:
        return "text enc." if "modules" in record else "-"
    if len(layers) == record.get("num_layers"):
        return "all"
    return layers_text(layers)


def compare_lines(root: str, model: str, family: str, concept: str) -> list[str]:
    """One line per evaluated edit of the concept: the edited rate before -> after on the concept's prompts, the
    flags, the worst specificity change, paired preservation and CMMD."""
    found = _evaluations(root, model, family, concept)
    if not found:
        raise UserError(f"no evaluated edit of {family} / {concept!r} on {model} under {root}: run `locolab edit "
                        "... --eval` first")
    lines = [f"{'method':<20}{'layers':<12}{'edit':<34}{'eval':<11}{'removed':<9}{'concept rate':<14}{'flags':>5}  "
             f"{'worst other change':<46}{'1 - SSIM':<10}{'changed':<9}CMMD (p)"]
    for record, summary in found:
        battery = summary["battery"]
        edited = [r for r in battery["detection"] if r["group"] == "concept" and r["role"] == "efficacy"
                  and r["units"]]
        rate = f"{edited[0]['before']:.2f} -> {edited[0]['after']:.2f}" if edited else "n/a"
        others = [r for r in battery["detection"] if r["role"] == "specificity" and r["units"]]
        worst = min(others, key=lambda r: r["change_high"], default=None)
        worst_text = (f"{worst['group']} {worst['attribute']} {_change(worst)}" if worst else "n/a")
        kept = battery.get("preservation") or {}
        shift = battery.get("cmmd") or {}
        lines.append(
            f"{record['method']:<20}{_layers(record):<12}{record['edit_id'][:33]:<34}{summary['eval_id']:<11}"
            f"{ {True: 'yes', False: 'no', None: 'n/a'}[battery['effective']]:<9}{rate:<14}"
            f"{len(battery['flags']):>5}  {worst_text:<46}"
            f"{kept['ssim_distance']['mean'] if kept else float('nan'):<10.3f}"
            f"{kept['changed']['share'] if kept else float('nan'):<9.2f}"
            + (f"{shift['value']:.3g} ({shift['p_value']:.3f})" if shift else "n/a"))
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m compute.edit.battery_report", description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--family", required=True)
    parser.add_argument("--concept", required=True)
    parser.add_argument("--artifacts", help="artifact root (default $LOCOLAB_ARTIFACTS or artifacts/)")
    args = parser.parse_args(argv)
    try:
        print("\n".join(compare_lines(resolve_root(args.artifacts), args.model, args.family, args.concept)))
    except UserError as error:
        parser.exit(2, f"error: {error}\n")


if __name__ == "__main__":
    main()
