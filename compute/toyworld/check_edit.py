"""Ground truth for an edit of the toy world: read every evaluation image's colour and background with the procedural
checker and compare them with what its prompt asks for, before and after the edit.

Per prompt group (efficacy, generalization, other_concepts, unrelated, target) and phase: the fraction of images whose
background / colour is the prompt's, and for a background edit the fraction that still shows the edited background
(the edit's efficacy in pixels: it should fall to 0 on the edited concept's prompts and stay elsewhere).
"""

import io
from collections import defaultdict

import numpy as np
from PIL import Image

from locolab.compute.toyworld import world
from locolab.contract.errors import UserError
from locolab.contract.store import Store, read_bytes


def check_edit(root, edit_id: str, eval_id: str | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """{group: {phase: {measure: fraction}}} for a stored evaluation of ``edit_id`` under ``root``.

    Args:
        eval_id: which evaluation (each set of evaluation settings has its own); None: the edit's only one.
    """
    store = Store(root)
    con = store.connect()
    found = [e for (e,) in con.execute("SELECT DISTINCT eval_id FROM edit_scores WHERE edit_id = ? ORDER BY 1",
                                       [edit_id]).fetchall()]
    if not found:
        raise UserError(f"no evaluation of edit {edit_id!r} under {store.root}: run the edit with --eval first")
    if eval_id is None and len(found) > 1:
        raise UserError(f"edit {edit_id!r} has {len(found)} evaluations (other settings): pass --eval-id, one of "
                        f"{', '.join(str(e) for e in found)}")
    if eval_id is not None and eval_id not in found:
        raise UserError(f"edit {edit_id!r} has no evaluation {eval_id!r}: use one of "
                        f"{', '.join(str(e) for e in found)}")
    chosen = found[0] if eval_id is None else eval_id
    rows = con.execute('SELECT "group", prompt, phase, image_path, concept, family FROM edit_scores '
                       "WHERE edit_id = ? AND eval_id IS NOT DISTINCT FROM ?", [edit_id, chosen]).fetchall()
    hits: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for group, prompt, phase, image_path, concept, family in rows:
        with Image.open(io.BytesIO(read_bytes(store.path(image_path)))) as image:
            seen = world.check_image(np.asarray(image.convert("RGB")))
        asked = world.caption_attributes(prompt)
        for attribute in ("background", "colour"):
            if attribute in asked:
                hits[group][phase][f"{attribute} as prompted"].append(seen[attribute] == asked[attribute])
        if family == "style":
            hits[group][phase][f"shows {concept}"].append(seen["background"] == concept)
    return {group: {phase: {measure: float(np.mean(values)) for measure, values in measures.items()}
                    for phase, measures in phases.items()} for group, phases in hits.items()}


def main(argv=None) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m compute.toyworld check-edit", description=__doc__)
    parser.add_argument("edit_id")
    parser.add_argument("--eval-id", help="which evaluation, when the edit has several (other settings)")
    parser.add_argument("--artifacts", help="artifact root (default $LOCOLAB_ARTIFACTS or artifacts/)")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(check_edit(args.artifacts, args.edit_id, args.eval_id), indent=2))
    except UserError as error:
        parser.exit(2, f"error: {error}\n")
