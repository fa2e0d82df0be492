"""The evaluation battery as text: one evaluation's table (``locolab eval-edit``) and every method's evaluation of one
concept side by side (``python -m compute.edit.battery_report``, which ``make compare`` runs last)."""

import argparse

from locolab.contract.errors import UserError
from locolab.contract.method_grid import cells, read_evaluations
from locolab.contract.queries import battery_evaluations
from locolab.contract.store import Store, resolve_root


def _rate(row: dict, key: str) -> str:
    return f"{row[key]:.2f} [{row[f'{key}_low']:.2f}, {row[f'{key}_high']:.2f}]"


def _change(row: dict) -> str:
    return f"{row['change']:+.2f} [{row['change_low']:+.2f}, {row['change_high']:+.2f}]"


def table_lines(battery: dict) -> list[str]:
    """One evaluation's battery: the detection table (group, attribute, role, images, rate before -> after, the
    change with its interval, ``!`` where a specificity rate fell), then preservation, CMMD, the verdict (with the
    recovery attack's, where it ran), the attack's lines, skipped detectors and warnings."""
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
                    else "no collateral damage detected")
                 + ({True: "; BROUGHT BACK by the recovery attack", False: "; stays removed under the recovery attack",
                     None: ""}[battery["attack"]["recovered"]] if battery.get("attack") else ""))
    lines += attack_lines(battery.get("attack"))
    lines += [f"skipped detector {s['id']}: {s['reason']}" for s in battery["skipped_detectors"]]
    lines += [f"skipped metric {s['id']}: {s['reason']}" for s in battery.get("skipped_metrics", [])]
    lines += [f"warning: {w}" for w in battery["warnings"]]
    return lines


def attack_lines(attack: dict | None) -> list[str]:
    """The recovery attack: its settings and loss, each detector's concept rate before the edit -> after it -> under
    attack (with the paired change under attack - after), and whether it brought the concept back."""
    if not attack:
        return []
    lines = [f"recovery attack ({attack['steps']} steps, {attack['tokens']} soft token(s), lr "
             f"{attack['learning_rate']:g}, {attack['training_images']} training images, {attack['seconds']:.0f} s, "
             f"{attack['cpu_seconds']:.0f} s of CPU): "
             f"loss {attack['loss_before']:.4g} -> {attack['loss_after']:.4g}"]
    for row in attack["rows"]:
        lines.append(f"  {row['attribute']:<11} ({row['units']} images) before {_rate(row, 'before')} -> after "
                     f"{_rate(row, 'after')} -> under attack {_rate(row, 'attacked')}, raised by "
                     f"{row['raised']:+.2f} [{row['raised_low']:+.2f}, {row['raised_high']:+.2f}]")
    back = {True: "yes (its rate under attack is not below its rate before the edit)",
            False: "no (still below its rate before the edit)", None: "n/a (the edit did not remove it)"}
    lines.append(f"  concept recovered under attack: {back[attack['recovered']]}")
    return lines


def _mean(stat: dict) -> str:
    return f"{stat['mean']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"


def compare_lines(root: str, model: str, family: str, concept: str) -> list[str]:
    """One line per evaluated edit of the concept (``contract.method_grid.cells``): editor, where it acts, whether
    the concept was removed, its rate before -> after, the flags, the worst other change, paired preservation,
    CMMD and the recovery attack's rate and verdict (where it ran)."""
    con = Store(root).connect()
    rows = cells(read_evaluations(root, battery_evaluations(con, model, family, concept)))
    if not rows:
        raise UserError(f"no evaluated edit of {family} / {concept!r} on {model} under {root}: run `locolab edit "
                        "... --eval` first")
    lines = [f"{'method':<20}{'layers':<12}{'edit':<34}{'eval':<11}{'removed':<9}{'concept rate':<14}{'flags':>5}  "
             f"{'worst other change':<46}{'1 - SSIM':<24}{'changed':<20}{'CMMD (p)':<16}under attack"]
    for row in rows:
        lines.append(f"{row['method']:<20}{row['layers']:<12}{row['edit'][:33]:<34}{row['eval']:<11}"
                     f"{row['removed']:<9}{row['concept rate']:<14}{row['flags']:>5}  {row['worst other change']:<46}"
                     f"{row['1 - SSIM']:<24}{row['changed']:<20}{row['CMMD (p)']:<18}{row['under attack']}")
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
