"""Many concepts in one edit: one key set per concept and one solve; each concept's prompts are evaluated against
its own score text and target reference; on the toy world one edit of the localized layer removes all three
backgrounds (the battery's pixel checker) and keeps every colour and shape."""

import numpy as np
import pytest

from locolab.compute.edit.closed_form import applied
from locolab.compute.edit.detectors import toyworld_detectors
from locolab.compute.edit.evaluation import eval_prompts
from locolab.compute.edit.metrics import paired_rate_change
from locolab.compute.edit.request import build_edit, dtype_name, make_request
from locolab.compute.generation import Case, generate
from locolab.compute.grid import quantize
from locolab.compute.settings import Settings
from locolab.compute.toyworld import world
from locolab.contract.errors import UserError
from locolab.contract.specs import EditSpec
from locolab.contract.summaries import DEFAULT_LEVEL

BACKGROUNDS = ("stripes", "dots", "checkers")


def _request(method: str, model) -> dict:
    spec = EditSpec("toyworld", "style", "stripes", method=method, concepts=BACKGROUNDS, layers=(12,),
                    positions="subject+padding")
    return make_request(spec, dtype_name(model))


@pytest.mark.slow
@pytest.mark.heavy  # the slow tier: make test-heavy
@pytest.mark.parametrize("method", ["loco", "uce"])
def test_one_edit_of_three_backgrounds_removes_each_and_keeps_colours_and_shapes(load, method):
    model = load("toyworld")
    request = _request(method, model)
    edit = build_edit(model, request)
    settings = Settings.defaults(model.spec)
    prompts = {c: [p for p in eval_prompts(request, 0, 0) if p.group in ("efficacy", "generalization")
                   and p.prompt.endswith(c)] for c in BACKGROUNDS}  # the battery's concept group, per concept
    cases = [Case(p.prompt, seed) for c in BACKGROUNDS for p in prompts[c] for seed in (0, 1)]
    before = quantize(np.concatenate(list(generate(model, cases, settings))))
    with applied(model, edit):
        after = quantize(np.concatenate(list(generate(model, cases, settings))))
    shape, colour, background = toyworld_detectors()
    asked = [c for c in BACKGROUNDS for _ in range(2 * len(prompts[c]))]
    for concept in BACKGROUNDS:  # removed: the rate's change interval lies below 0 (the battery's efficacy)
        rows = [i for i, c in enumerate(asked) if c == concept]
        change = paired_rate_change(*(np.array(background.detect(images[rows])) == concept
                                      for images in (before, after)), DEFAULT_LEVEL)
        print(f"{method} {concept}: background rate {change['before']:.2f} -> {change['after']:.2f} "
              f"[{change['change_low']:+.2f}, {change['change_high']:+.2f}] on {len(rows)} images")
        assert change["before"] == 1.0 and change["change_high"] < 0
    for detector in (shape, colour):  # kept: no change interval below 0 (no flag)
        said = [(i, world.caption_attributes(case.prompt).get(detector.attribute)) for i, case in enumerate(cases)]
        rows, labels = zip(*[(i, label) for i, label in said if label])
        change = paired_rate_change(*(np.array(detector.detect(images[list(rows)])) == labels
                                      for images in (before, after)), DEFAULT_LEVEL)
        print(f"{method} {detector.attribute}: rate {change['before']:.2f} -> {change['after']:.2f} on {len(rows)}")
        assert change["before"] == 1.0 and change["change_high"] >= 0 and change["after"] >= 0.95


@pytest.mark.slow
def test_each_concept_is_keyed_and_evaluated_against_its_own_text(load):
    model = load("toyworld")
    request = _request("loco", model)
    assert request["concepts"] == list(BACKGROUNDS) and list(request["prompts_by_concept"]) == list(BACKGROUNDS)
    single = build_edit(model, make_request(EditSpec("toyworld", "style", "stripes", layers=(12,),
                                                     positions="subject+padding"), dtype_name(model)))
    assert build_edit(model, request).meta["num_keys"] == 3 * single.meta["num_keys"]
    prompts = eval_prompts(request, None, 3)
    efficacy = {(p.prompt, p.score_text) for p in prompts if p.group == "efficacy"}
    assert ("a red square on dots", "dots style") in efficacy and ("checkers", "checkers style") in efficacy
    assert [p.score_text for p in prompts if p.group == "target"] == [f"{c} style" for c in BACKGROUNDS]
    assert not [p for p in prompts if p.group == "other_concepts"]  # every background is edited
    assert not [p for p in prompts if p.group == "unrelated" and any(c in p.prompt for c in BACKGROUNDS)]


def test_many_concepts_are_for_the_closed_forms_on_the_unet_only():
    with pytest.raises(UserError, match="--concepts is for --method loco, all-layers, uce, not --method time"):
        EditSpec("toyworld", "style", "stripes", method="time", concepts=("dots",))
