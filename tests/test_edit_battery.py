"""The edit evaluation battery: detectors against rendered ground truth, paired distances, CMMD, the paired rate
change's interval (simulated coverage, McNemar equivalence) and the battery of an identity edit."""

import json
import math

import numpy as np
import pytest

from locolab.compute.edit import battery as edit_battery
from locolab.compute.edit.battery_report import compare_lines, table_lines
from locolab.compute.edit.detectors import NONE, clip_zero_shot, toyworld_detectors
from locolab.compute.edit.evaluation import eval_prompts
from locolab.compute.edit.metrics import cmmd, cmmd_paired_test, paired_rate_change, psnr, ssim
from locolab.compute.scoring import load_scorer
from locolab.compute.toyworld import world
from locolab.contract.catalog.attributes import PROMPT_SETS, ROBUSTNESS_KINDS, attribute_family, robustness_prompts
from locolab.contract.errors import UserError
from locolab.contract.names import FAMILIES, eval_folder
from locolab.contract.store import write_table
from locolab.dashboard import battery_view

SCENES = [world.sample_scene(seed, entity_rate=0.0) for seed in range(5000, 5120)]
RENDERS = np.stack([world.render(scene) for scene in SCENES]).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def toy_scorer():
    return load_scorer("toyworld-clip")


def test_toyworld_detectors_read_every_attribute_of_rendered_scenes_exactly():
    for detector in toyworld_detectors():
        found = detector.detect(RENDERS)
        truth = [getattr(scene, detector.attribute) for scene in SCENES]
        assert found == truth, detector.detector_id
        assert detector.probabilities(RENDERS).sum(1) == pytest.approx(np.ones(len(SCENES)))
    blank = np.stack([world.render(world.Scene("circle", "red", "dots", radius=0))]) / 255.0
    assert [d.detect(blank)[0] for d in toyworld_detectors()] == [NONE, NONE, "dots"]


def test_clip_zero_shot_reads_the_toy_backgrounds_with_the_mini_clip(toy_scorer):
    detector = clip_zero_shot(toy_scorer, "style", "toyworld")
    assert detector.labels == ("stripes", "dots", "checkers", "an object on plain")
    patterned = [i for i, scene in enumerate(SCENES) if scene.background != "plain"]
    found = detector.detect(RENDERS[patterned])
    accuracy = np.mean([f == SCENES[i].background for f, i in zip(found, patterned)])
    assert accuracy >= 0.9
    assert detector.probabilities(RENDERS[:5]).sum(1) == pytest.approx(np.ones(5))


def test_ssim_and_psnr_of_identical_images_and_one_window_by_hand():
    image = RENDERS[0]
    assert ssim(image, image) == 1.0 and psnr(image, image) is None
    rng = np.random.default_rng(0)
    x, y = rng.random((7, 7, 3)), rng.random((7, 7, 3))
    expected = []
    for c in range(3):
        a, b = x[..., c].ravel(), y[..., c].ravel()
        cov = np.cov(a, b)
        expected.append((2 * a.mean() * b.mean() + 1e-4) * (2 * cov[0, 1] + 9e-4)
                        / ((a.mean() ** 2 + b.mean() ** 2 + 1e-4) * (cov[0, 0] + cov[1, 1] + 9e-4)))
    assert ssim(x, y) == pytest.approx(np.mean(expected), rel=1e-9)
    assert psnr(x, y) == pytest.approx(10 * math.log10(1 / np.mean((x - y) ** 2)))


def test_cmmd_is_zero_for_a_set_and_itself_and_positive_between_different_sets():
    rng = np.random.default_rng(1)
    first = rng.normal(size=(40, 16))
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    shifted = first + 0.5 * np.eye(16)[0]
    shifted /= np.linalg.norm(shifted, axis=1, keepdims=True)
    assert cmmd(first, first) == pytest.approx(0.0, abs=1e-9)
    value, p = cmmd_paired_test(first, shifted, np.random.default_rng(0), permutations=200)
    assert value > 0.1 and p < 0.01
    same, p_same = cmmd_paired_test(first, first, np.random.default_rng(0), permutations=200)
    assert same == pytest.approx(0.0, abs=1e-9) and p_same == 1.0


def test_paired_rate_change_excludes_zero_exactly_when_mcnemar_rejects():
    z2 = 1.959963984540054 ** 2
    for lost in range(8):
        for gained in range(8):
            before = np.array([True] * lost + [False] * gained + [True] * 5 + [False] * 5)
            after = np.array([False] * lost + [True] * gained + [True] * 5 + [False] * 5)
            row = paired_rate_change(before, after, 0.95)
            excludes = row["change_high"] < -1e-9 or row["change_low"] > 1e-9
            rejects = lost + gained > 0 and (lost - gained) ** 2 / (lost + gained) > z2
            assert excludes == rejects, (lost, gained)
            assert row["change_low"] <= row["change"] <= row["change_high"]


def test_paired_rate_change_covers_the_true_change_at_its_level():
    rng = np.random.default_rng(2)
    n, trials, covered = 30, 1000, 0
    for _ in range(trials):
        before = rng.random(n) < 0.8
        after = np.where(before, rng.random(n) >= 0.15, rng.random(n) < 0.3)
        row = paired_rate_change(before, after, 0.95)
        covered += row["change_low"] <= 0.8 * -0.15 + 0.2 * 0.3 <= row["change_high"]
    assert 0.93 <= covered / trials <= 0.99


def _battery(scorer, before, after, prompts):
    meta = {"model": "toyworld", "family": "style", "concept": "stripes", "prompt_set": "toyworld"}
    images = [edit_battery.Image(group, prompt, text, 0) for group, prompt, text in prompts]
    paths = {phase: [f"{phase}-{i}.png" for i in range(len(images))] for phase in ("before", "after")}
    return edit_battery.run(meta, "edit", scorer, images, {"before": before, "after": after}, paths, 0.95)


def _prompts(scenes, group):
    return [(group, f"a {s.colour} {s.shape} on {s.background}", "") for s in scenes]


def test_an_identity_edit_changes_nothing_the_battery_measures(toy_scorer):
    scenes = SCENES[:12]
    images = RENDERS[:12]
    summary, columns = _battery(toy_scorer, images, images.copy(), _prompts(scenes, "unrelated"))
    kept = summary["preservation"]
    assert kept["clip_distance"]["max"] == 0.0 and kept["ssim_distance"]["max"] == 0.0
    assert kept["changed"]["count"] == 0 and kept["psnr"]["identical"] == 12
    assert summary["cmmd"]["value"] == pytest.approx(0.0, abs=1e-9) and summary["cmmd"]["p_value"] == 1.0
    assert summary["flags"] == [] and summary["effective"] is None
    assert all(row["change"] == 0 and row["kept"] == 1.0 for row in summary["detection"] if row["units"])
    assert {c["clip_distance"] for c in columns["after"]} == {0.0} and {c["ssim"] for c in columns["after"]} == {1.0}
    assert [s["id"] for s in summary["skipped_detectors"]] == ["nudenet", "imagenet:microsoft/resnet-50"]
    assert [s["id"] for s in summary["skipped_metrics"]] == ["lpips", "kid"]


def test_a_shape_changing_edit_is_flagged_and_a_removed_background_is_effective(toy_scorer):
    """Stripes removed from 10 images (efficacy) while 10 unrelated circles become crosses: effective, and the
    unrelated shape rate's fall is flagged; the colours and backgrounds stay."""
    striped = [world.Scene("circle", c, "stripes", radius=9) for c in world.COLOURS] * 3
    plain = [world.Scene(s.shape, s.colour, "plain", radius=9) for s in striped]
    circles = [world.Scene("circle", c, b) for c in world.COLOURS for b in ("dots", "checkers", "plain")]
    crosses = [world.Scene("cross", s.colour, s.background) for s in circles]

    def render(scenes):
        return np.stack([world.render(s) for s in scenes]).astype(np.float32) / 255.0

    before = np.concatenate([render(striped), render(circles)])
    after = np.concatenate([render(plain), render(crosses)])
    prompts = _prompts(striped, "efficacy") + _prompts(circles, "unrelated")
    summary, _ = _battery(toy_scorer, before, after, prompts)
    rows = {(r["group"], r["attribute"]): r for r in summary["detection"]}
    assert rows["concept", "background"]["before"] == 1.0 and rows["concept", "background"]["after"] == 0.0
    assert summary["effective"] is True
    assert rows["unrelated", "shape"]["change"] == -1.0 and rows["unrelated", "shape"]["change_high"] < 0
    assert rows["unrelated", "colour"]["change"] == 0.0 and rows["concept", "shape"]["change"] == 0.0
    assert [f.split(":")[0] for f in summary["flags"]] == ["unrelated · shape as prompted"]
    assert summary["preservation"]["changed"]["count"] > 0 and summary["cmmd"]["value"] > 0
    view_rows = battery_view.detection_rows(summary)
    assert [(r["group"], r["attribute"]) for r in view_rows if r["flag"]] == [("unrelated", "shape")]
    kind, text = battery_view.verdict(summary)
    assert kind == "error" and "unrelated · shape as prompted: 1.00 -> 0.00" in text
    assert battery_view.preservation_rows(summary)[-1]["measure"] == "CMMD"
    (line,) = [line for line in table_lines(summary) if line.split()[:2] == ["unrelated", "shape"]]
    assert line.split()[2:] == ["spec", "12", "1.00", "[0.76,", "1.00]", "0.00", "[0.00,", "0.24]", "-1.00",
                                "[-1.00,", "-0.52]", "!", "0.00"]


@pytest.mark.parametrize("prompt_set", list(PROMPT_SETS))
def test_every_shipped_concept_has_a_paraphrase_a_misspelling_and_an_indirect_reference(prompt_set):
    shipped = sorted(p.stem for p in PROMPT_SETS[prompt_set].glob("*.yaml") if p.stem in FAMILIES)
    assert shipped
    for name in shipped:
        family = attribute_family(name, prompt_set)
        for concept in family.concepts:
            found = robustness_prompts(prompt_set, name, concept)
            assert sorted(found) == sorted(ROBUSTNESS_KINDS), (prompt_set, name, concept)
            assert len(set(found.values())) == 3
            assert not set(found.values()) & set(family.source_prompts(concept))
            assert concept.lower() not in found["indirect"].lower(), (name, concept)
    meta = {"family": "style", "concept": "stripes", "prompt_set": "toyworld", "source_prompts": ["stripes"],
            "target": "an object on plain"}
    assert [p.prompt for p in eval_prompts(meta, 2) if p.group == "robustness"] == [
        "a red circle in striped style", "a red circle on strips", "the ocean"]


def test_the_comparison_lists_every_evaluated_method_of_the_concept_in_method_order(tmp_path, toy_scorer):
    summary, _ = _battery(toy_scorer, RENDERS[:4], RENDERS[:4], _prompts(SCENES[:4], "unrelated"))
    for method in ("all-layers", "loco"):
        edit_id = f"stripes-{method}-0"
        folder = tmp_path / eval_folder(edit_id, "e1")
        folder.mkdir(parents=True)
        (folder / "eval.json").write_text(json.dumps({"eval_id": "e1", "battery": summary}))
        layers = [12] if method == "loco" else list(range(16))
        (tmp_path / "edits" / edit_id / "edit.json").write_text(json.dumps({"edit_id": edit_id, "method": method,
                                                                            "layers": layers, "num_layers": 16}))
        write_table("edit_scores", [dict(edit_id=edit_id, model="toyworld", family="style", concept="stripes",
                                         eval_id="e1", method=method)], part=f"{edit_id}-e1", root=tmp_path)
    lines = compare_lines(str(tmp_path), "toyworld", "style", "stripes")
    assert [line.split()[:4] for line in lines[1:]] == [["loco", "layer", "12", "stripes-loco-0"],
                                                        ["all-layers", "all", "stripes-all-layers-0", "e1"]]
    assert lines[1].split()[-3:] == ["0", "(1.000)", "-"]  # CMMD of an identity edit, its p-value, no attack
    with pytest.raises(UserError, match="no evaluated edit of style / 'dots' on toyworld"):
        compare_lines(str(tmp_path), "toyworld", "style", "dots")
