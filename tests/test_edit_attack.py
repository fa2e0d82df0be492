"""The recovery attack (``--attack``, compute/edit/attack.py): at 0 steps it is the prompt itself, bit for bit; on an
identity edit its loss and gradient are exactly 0, so nothing moves; on the toy world's all-layers stripes edit its
loss falls; its settings are recorded in eval.json and the evaluation's id, its rows in edit_scores, and it is
refused, with the reason, where no single CLIP text encoder's input embeddings are reachable."""

import hashlib
import json

import numpy as np
import pytest
import torch

from locolab.compute.edit import attack as edit_attack
from locolab.compute.edit.battery_report import attack_lines, table_lines
from locolab.compute.edit.closed_form import Edit, applied
from locolab.compute.edit.evaluation import eval_prompts, evaluate
from locolab.compute.edit.request import build_edit, dtype_name, make_request
from locolab.compute.generation import Case, generate
from locolab.compute.grid import quantize
from locolab.compute.scoring import load_scorer
from locolab.compute.settings import Settings
from locolab.contract.method_grid import under_attack
from locolab.contract.names import EDIT_SUMMARY, EVAL_SETTINGS, eval_folder
from locolab.contract.specs import EditSpec
from locolab.contract.store import Store, part_path
from locolab.dashboard import battery_view

SEEDS = (0, 1)


def _edit(model, method: str = "all-layers") -> Edit:
    return build_edit(model, make_request(EditSpec("toyworld", "style", "stripes", method=method), dtype_name(model)))


def _concept_prompts(edit: Edit, group: str = "efficacy") -> list[str]:
    return [p.prompt for p in eval_prompts(edit.meta, 0, 0) if p.group == group]


def _images(model, prompts, edit=None) -> np.ndarray:
    cases = [Case(p, seed) for p in prompts for seed in SEEDS]
    settings = Settings.defaults(model.spec)
    if edit is None:
        return quantize(np.concatenate(list(generate(model, cases, settings))))
    with applied(model, edit):
        return quantize(np.concatenate(list(generate(model, cases, settings))))


@pytest.mark.slow
@pytest.mark.parametrize("name, concept, prompt", [("toyworld", "stripes", "a blue circle on stripes"),
                                                   ("tiny-sd1", "van gogh", "a painting in the style of van gogh"),
                                                   ("tiny-sd2", "monet", "monet")])
def test_the_concepts_own_tokens_encode_to_the_prompts_embedding_bit_for_bit(load, name, concept, prompt):
    model = load(name)
    count = edit_attack.concept_tokens(model.pipe.tokenizer, concept)
    vectors = edit_attack.initial_vectors(model, concept, count)
    with torch.no_grad():
        soft, plain = edit_attack.encode(model, prompt, concept, vectors), model.arch.encode(model.pipe, prompt).cond
    assert torch.equal(soft, plain)


def test_soft_tokens_take_the_concepts_place_or_go_in_front():
    model = _Tokenizing()
    ids, mask, start = edit_attack._tokens(model, "a painting in the style of van gogh", "van gogh", 3)
    plain = model.pipe.tokenizer("a painting in the style of van gogh").input_ids
    word = model.pipe.tokenizer("van gogh", add_special_tokens=False).input_ids
    assert len(word) == 2 and start == len(plain) - 3
    assert ids[0, :start].tolist() == plain[:start] and ids[0, start + 3] == plain[-1]  # end of text after the slots
    assert mask.sum() == len(plain) + 1  # 3 slots for 2 tokens; padding masked
    ids, mask, start = edit_attack._tokens(model, "a house", "van gogh", 2)  # no concept: in front, as UnlearnDiffAtk
    assert start == 1 and ids[0, 3:6].tolist() == model.pipe.tokenizer("a house").input_ids[1:]


class _Tokenizing:
    """A model with only a tokenizer (``_tokens`` reads nothing else)."""

    class pipe:
        from locolab.compute.models.tokenizer import clip_tokenizer

        tokenizer = clip_tokenizer()


@pytest.mark.slow
def test_a_zero_step_attack_generates_the_edited_models_images_bit_for_bit(load):
    model = load("toyworld")
    edit = _edit(model)
    prompts = _concept_prompts(edit)[:2]
    before = _images(model, prompts)
    learned = edit_attack.learn(model, edit, [p for p in prompts for _ in SEEDS], before, 0, 1, 8)
    assert learned.record["losses"] == [] and learned.record["loss_before"] == learned.record["loss_after"] > 0
    conditions = edit_attack.conditionings(model, learned, prompts)
    settings = Settings.defaults(model.spec)
    with applied(model, edit):
        attacked = quantize(np.concatenate(list(generate(model, [Case(c, s) for c in conditions for s in SEEDS],
                                                         settings))))
    assert np.array_equal(attacked, _images(model, prompts, edit))


@pytest.mark.slow
def test_on_an_identity_edit_the_loss_and_its_gradient_are_zero_and_nothing_moves(load):
    model = load("toyworld")
    edit = Edit({**_edit(model).meta, "edit_id": "identity"})  # no weight changed
    prompts = _concept_prompts(edit)[:2]
    before = _images(model, prompts)
    learned = edit_attack.learn(model, edit, [p for p in prompts for _ in SEEDS], before, 4, 1, 4)
    assert learned.record["loss_before"] == learned.record["loss_after"] == 0.0
    assert learned.record["losses"] == [0.0] * 4
    assert torch.equal(learned.vectors, edit_attack.initial_vectors(model, "stripes", 1))


@pytest.mark.slow
def test_the_attacks_loss_falls_on_the_all_layers_stripes_edit(load):
    model = load("toyworld")
    edit = _edit(model)
    prompts = _concept_prompts(edit)
    before = _images(model, prompts)
    learned = edit_attack.learn(model, edit, [p for p in prompts for _ in SEEDS], before, 6, 1, 8)
    again = edit_attack.learn(model, edit, [p for p in prompts for _ in SEEDS], before, 6, 1, 8)
    print(f"loss {learned.record['loss_before']:.5f} -> {learned.record['loss_after']:.5f}")
    assert learned.record["loss_after"] < 0.75 * learned.record["loss_before"]
    assert torch.equal(learned.vectors, again.vectors) and learned.record["losses"] == again.record["losses"]


def test_architectures_without_one_reachable_clip_encoder_and_multi_concept_edits_are_refused():
    assert edit_attack.refusal("sd1", "tiny-sd1", {}) is None
    assert edit_attack.refusal("sdxl", "tiny-sdxl", {}) == (
        "--attack learns soft tokens in one CLIP text encoder's input embeddings (SD-1.x/2.x and the toy world); "
        "tiny-sdxl (sdxl) conditions on more than that: drop --attack")
    assert edit_attack.refusal("sd1", "toyworld", {"concepts": ["stripes", "dots"]}).startswith(
        "--attack attacks one concept")


@pytest.mark.slow
@pytest.mark.heavy  # the slow tier: make test-heavy
def test_an_attacked_evaluation_records_its_settings_rows_and_verdict(load, tmp_path):
    model = load("toyworld")
    edit = _edit(model)
    scorer = load_scorer("toyworld-clip")
    settings = Settings.defaults(model.spec)
    plain = evaluate(model, edit, scorer, settings, [0], str(tmp_path), unrelated=0, other_concepts=0)
    summary = evaluate(model, edit, scorer, settings, [0], str(tmp_path), unrelated=0, other_concepts=0,
                       attack_steps=3)
    expected = {"version": 1, "steps": 3, "tokens": 1, "learning_rate": edit_attack.LEARNING_RATE, "seed": 0}
    assert summary["attack"] == expected and plain["attack"] is None
    # An evaluation without an attack keeps the id it had before attacks existed; one with an attack gets its own.
    assert plain["eval_id"] == hashlib.sha256(json.dumps([plain[k] for k in EVAL_SETTINGS]).encode()).hexdigest()[:10]
    assert summary["eval_id"] != plain["eval_id"]
    stored = json.loads((tmp_path / eval_folder(edit.edit_id, summary["eval_id"]) / EDIT_SUMMARY).read_text())
    attack = stored["battery"]["attack"]
    assert {k: attack[k] for k in expected} == expected and len(attack["losses"]) == 3
    concept = len(_concept_prompts(edit)) + len(_concept_prompts(edit, "generalization"))
    assert stored["num_prompts"]["attack"] == concept
    assert [row["units"] for row in attack["rows"]] == [concept, concept]  # background and CLIP style
    rows = Store(str(tmp_path)).read(part_path("edit_scores", f"{edit.edit_id}-{summary['eval_id']}", {},
                                               str(tmp_path))).to_pylist()
    attacked = [r for r in rows if r["group"] == "attack"]
    assert len(attacked) == 2 * concept and {r["phase"] for r in attacked} == {"before", "after"}
    assert all(r["image_path"].split("/")[-1].startswith("attack-") for r in attacked if r["phase"] == "after")
    again = evaluate(model, edit, scorer, settings, [0], str(tmp_path), unrelated=0, other_concepts=0,
                     attack_steps=3)
    assert again["reused"] and again["eval_id"] == summary["eval_id"]


ATTACK = {"version": 1, "steps": 50, "tokens": 1, "learning_rate": 0.01, "seed": 0, "training_images": 8,
          "seconds": 12.3, "cpu_seconds": 7.6, "loss_before": 0.0093, "loss_after": 0.0041, "losses": [],
          "rows": [{"detector": "toyworld-background", "attribute": "background", "units": 20,
                    "before": 1.0, "before_low": 0.84, "before_high": 1.0, "after": 0.55, "after_low": 0.34,
                    "after_high": 0.74, "attacked": 0.9, "attacked_low": 0.7, "attacked_high": 0.97,
                    "change": -0.1, "change_low": -0.3, "change_high": 0.08,
                    "raised": 0.35, "raised_low": 0.13, "raised_high": 0.57}], "recovered": True}


def test_the_attack_is_reported_in_the_table_the_comparison_and_the_dashboard():
    lines = attack_lines(ATTACK)
    assert lines[0] == ("recovery attack (50 steps, 1 soft token(s), lr 0.01, 8 training images, 12 s, 8 s of CPU): "
                        "loss 0.0093 -> 0.0041")
    assert "before 1.00 [0.84, 1.00] -> after 0.55 [0.34, 0.74] -> under attack 0.90 [0.70, 0.97], raised by "\
           "+0.35 [+0.13, +0.57]" in lines[1]
    assert lines[2].endswith("recovered under attack: yes (its rate under attack is not below its rate before the "
                             "edit)")
    battery = {"version": 1, "level": 0.95, "detectors": [], "detection": [], "effective": True, "flags": [],
               "edited": {"attribute": "background", "label": "stripes"}, "skipped_detectors": [], "warnings": []}
    verdict = next(line for line in table_lines({**battery, "attack": ATTACK}) if line.startswith("verdict"))
    assert verdict.endswith("no collateral damage detected; BROUGHT BACK by the recovery attack")
    verdict = next(line for line in table_lines(battery) if line.startswith("verdict"))
    assert verdict.endswith("no collateral damage detected")
    assert attack_lines(None) == [] and under_attack(None) == "-" and under_attack(ATTACK) == "0.90 back"
    assert under_attack({**ATTACK, "recovered": False}) == "0.90 kept"
    assert battery_view.attack_rows({"attack": ATTACK})[0]["under attack"] == "0.90 [0.70, 0.97]"
    assert battery_view.attack_text(ATTACK)[0] == "error"
    assert battery_view.attack_text({**ATTACK, "recovered": None})[0] == "info"
