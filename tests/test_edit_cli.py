"""``python -m compute edit`` / ``eval-edit``: edit folders, layers from a sweep, bad input, evaluation tables."""

import json
import socket
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file

from locolab.compute.cli import main
from locolab.compute.edit.evaluation import summarize, summarize_new_fact
from locolab.contract.store import write_table

pytestmark = pytest.mark.slow  # the edit and eval-edit commands end to end, with evaluation

EDIT = ["edit", "--model", "tiny-sd1", "--family", "style", "--concept", "van gogh", "--target", "a painting"]
EVAL = ["--steps", "2", "--size", "32", "--seeds", "0", "--unrelated", "1", "--other-concepts", "1"]
EVAL_PROMPTS = 4 + 6 + 3 + 1 + 1 + 1  # efficacy, generalization, robustness, other concepts, unrelated, target


def _edit_ids(root):
    return sorted(p.name for p in (root / "edits").iterdir()) if (root / "edits").exists() else []


def _only_edit(root):
    (edit_id,) = _edit_ids(root)
    return edit_id, root / "edits" / edit_id


def test_edit_saves_only_the_changed_weights_and_a_record(tmp_path, capsys):
    assert main(EDIT + ["--layers", "9,8", "--lambda", "0.05", "--artifacts", str(tmp_path)]) == 0
    edit_id, folder = _only_edit(tmp_path)
    assert edit_id.startswith("van-gogh-loco-")
    weights = load_file(str(folder / "weights.safetensors"))
    assert sorted(weights) == [f"unet.up_blocks.1.attentions.{a}.transformer_blocks.0.attn2.{m}.weight"
                               for a in (1, 2) for m in ("to_k", "to_v")]
    record = json.loads((folder / "edit.json").read_text())
    assert (record["method"], record["layers"], record["lambda"]) == ("loco", [8, 9], 0.05)
    assert record["token_positions"] == [2, 8, 8, 8]
    assert record["source_prompts"][1] == "a painting in the style of van gogh"
    assert record["seconds"] > 0 and "torch" in record["versions"]
    assert edit_id in capsys.readouterr().out


def test_rerunning_the_same_edit_reuses_it(tmp_path, capsys):
    args = EDIT + ["--layers", "8,9", "--artifacts", str(tmp_path)]
    main(args)
    created = (tmp_path / "edits" / _only_edit(tmp_path)[0] / "edit.json").stat().st_mtime_ns
    assert main(args) == 0
    assert "already exists" in capsys.readouterr().out
    assert (tmp_path / "edits" / _only_edit(tmp_path)[0] / "edit.json").stat().st_mtime_ns == created


def test_all_layers_edits_k_and_v_of_every_layer(tmp_path):
    assert main(EDIT + ["--method", "all-layers", "--artifacts", str(tmp_path)]) == 0
    _, folder = _only_edit(tmp_path)
    assert len(load_file(str(folder / "weights.safetensors"))) == 32


def test_neuron_edit_saves_indices_and_values(tmp_path):
    assert main(EDIT + ["--method", "neuron", "--layers", "8,9", "--topk", "12", "--artifacts", str(tmp_path)]) == 0
    _, folder = _only_edit(tmp_path)
    units = load_file(str(folder / "units.safetensors"))
    indices = [v for k, v in units.items() if k.endswith(".indices")]
    assert [v.numel() for v in indices] == [12] * 4  # per matrix (the official selection): to_k, to_v of 8 and 9
    assert all(k.rsplit(".", 1)[0].endswith(("attn2.to_k", "attn2.to_v")) for k in units)
    assert not (folder / "weights.safetensors").exists()
    record = json.loads((folder / "edit.json").read_text())
    assert (record["position"], record["selection"]) == (76, "per-matrix")
    assert record["neutral_prompts"][0] == "a painting of a house"


def test_pooled_neuron_edit_holds_k_units_in_all(tmp_path):
    args = ["--method", "neuron", "--layers", "8,9", "--topk", "12", "--neuron-selection", "pooled"]
    assert main(EDIT + args + ["--artifacts", str(tmp_path)]) == 0
    _, folder = _only_edit(tmp_path)
    units = load_file(str(folder / "units.safetensors"))
    assert sum(v.numel() for k, v in units.items() if k.endswith(".indices")) == 12
    assert json.loads((folder / "edit.json").read_text())["selection"] == "pooled"


def _sweep_scores(root, concept="van gogh"):
    """Eight seeds (the fewest units a measurable concept has); the window 8-9 removes 90% of the gap in each."""
    seeds = range(8)
    rows = [dict(case_id=f"o{s}", kind="original", score=0.30, seed=s) for s in seeds]
    rows += [dict(case_id=f"t{s}", kind="target", score=0.10, seed=s) for s in seeds]
    rows += [dict(case_id=f"w1-{i}-{s}", kind="window", window_start=i, window_size=1, score=0.29, seed=s)
             for i in range(16) for s in seeds]
    rows += [dict(case_id=f"w2-{i}-{s}", kind="window", window_start=i, window_size=2, seed=s,
                  score=0.12 if i == 8 else 0.28) for i in range(15) for s in seeds]
    common = dict(run_id="run1", model="tiny-sd1", family="style", concept=concept,
                  scorer_id="openai/clip-vit-base-patch16",
                  score_text=f"style of {concept}")
    write_table("scores", [{**common, **row} for row in rows], part="run1-0", root=root)


def test_from_run_edits_the_minimal_localizing_window(tmp_path):
    _sweep_scores(tmp_path)
    assert main(EDIT + ["--from-run", "run1", "--artifacts", str(tmp_path)]) == 0
    _, folder = _only_edit(tmp_path)
    record = json.loads((folder / "edit.json").read_text())
    assert (record["layers"], record["from_run"]) == ([8, 9], "run1")


@pytest.mark.parametrize("extra, message", [
    (["--layers", "8,9", "--lambda", "0"], "argument --lambda: expected a number > 0 (finite), got '0'"),
    (["--layers", "8,9", "--lambda", "-1"], "argument --lambda: expected a number > 0 (finite), got '-1'"),
    (["--layers", "8,16"], "use indices 0..15"),
    (["--layers", "8", "--prompt", "a painting of a tree"], "does not occur in the source prompt"),
    (["--layers", "8", "--prompt", "a painting by van goghs"], "are not in the tokens"),
    (["--layers", "8", "--method", "neuron", "--topk", "100000"], "--topk 100000 is out of range"),
    (["--from-run", "run1"], "has no style scores"),
    (["--from-run", "other-run"], "has no style scores"),
    (["--layers", "8", "--method", "all-layers"], "drop --layers"),
    (["--layers", "8", "--method", "diffquickfix"], "edits text-encoder layer 0, not UNet layers: drop --layers"),
    (["--from-run", "run1", "--method", "diffquickfix"], "drop --layers/--from-run"),
    (["--method", "neuron", "--layers", "8", "--positions", "subject"], "not --method neuron"),
    (["--method", "diffquickfix", "--lambda", "0"], "argument --lambda: expected a number > 0"),
    (["--method", "diffquickfix", "--prompt", "a painting of a tree"], "does not occur in the source prompt"),
    ([], "needs --layers"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    _sweep_scores(tmp_path, concept="monet")
    assert main(EDIT + extra + ["--artifacts", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert _edit_ids(tmp_path) == []


def test_from_run_without_a_localizing_window_is_rejected(tmp_path, capsys):
    _sweep_scores(tmp_path)
    assert main(EDIT + ["--from-run", "run1", "--threshold", "0.95", "--artifacts", str(tmp_path)]) == 2
    assert ("run 'run1' does not localize 'van gogh' at threshold 0.95 (no window localizes; strongest layers 8–9 "
            "(m=2): does not localize: drop 0.90, 95% interval [0.90, 0.90], below 0.95; paired test at 0.95: p = 1, "
            "adjusted over 31 windows (Holm) p = 1, > 0.025; 8 units)") in capsys.readouterr().err


def test_diffquickfix_keys_only_the_subject_token_on_request(tmp_path):
    assert main(EDIT + ["--method", "diffquickfix", "--positions", "subject", "--artifacts", str(tmp_path)]) == 0
    record = json.loads((_only_edit(tmp_path)[1] / "edit.json").read_text())
    assert (record["positions"], record["num_keys"]) == ("subject", {"text_encoder": 4})


def _summary(folder):
    """The summary of the edit's only evaluation (``evals/<eval_id>/eval.json``)."""
    (path,) = folder.glob("evals/*/eval.json")
    return json.loads(path.read_text())


def _summary_of(folder, eval_id):
    return json.loads((folder / "evals" / eval_id / "eval.json").read_text())


def _eval_table(root):
    return pq.read_table(next((root / "tables" / "edit_scores").glob("*.parquet"))).to_pylist()


def test_eval_edit_scores_every_prompt_before_and_after(tmp_path):
    main(EDIT + ["--layers", "8,9", "--artifacts", str(tmp_path)])
    edit_id, folder = _only_edit(tmp_path)
    assert main(["eval-edit", edit_id, "--artifacts", str(tmp_path), "--scorer", "tiny-clip"] + EVAL) == 0
    rows = _eval_table(tmp_path)
    assert len(rows) == 2 * EVAL_PROMPTS
    assert {r["edit_id"] for r in rows} == {edit_id}
    assert all((tmp_path / r["image_path"]).is_file() for r in rows)
    before = {r["prompt"]: r["score"] for r in rows if r["phase"] == "before" and r["group"] == "efficacy"}
    after = {r["prompt"]: r["score"] for r in rows if r["phase"] == "after" and r["group"] == "efficacy"}
    assert before.keys() == after.keys() and before != after
    summary = _summary(folder)
    unrelated = {r["phase"]: r["score"] for r in rows if r["group"] == "unrelated"}
    assert summary["specificity"] == pytest.approx(unrelated["after"] / unrelated["before"])
    assert summary["num_prompts"]["generalization"] == 6


def _files(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_an_evaluation_is_identified_by_its_settings(tmp_path, capsys):
    """The same settings again return the stored evaluation (nothing rewritten); other settings are stored beside
    it, never over it."""
    main(EDIT + ["--layers", "8,9", "--artifacts", str(tmp_path)])
    edit_id, folder = _only_edit(tmp_path)
    evaluate = ["eval-edit", edit_id, "--artifacts", str(tmp_path), "--scorer", "tiny-clip"]
    assert main(evaluate + EVAL) == 0
    first = _summary(folder)
    stored = _files(tmp_path)
    capsys.readouterr()

    assert main(evaluate + EVAL) == 0
    assert f"evaluation {first['eval_id']} of {edit_id} with these settings already exists" in capsys.readouterr().out
    assert _files(tmp_path) == stored

    assert main(evaluate + EVAL[:1] + ["3"] + EVAL[2:]) == 0  # --steps 3 instead of 2
    summaries = {p.parent.name: json.loads(p.read_text()) for p in folder.glob("evals/*/eval.json")}
    assert set(summaries) == {first["eval_id"], next(k for k in summaries if k != first["eval_id"])}
    assert {s["steps"] for s in summaries.values()} == {2, 3}
    assert {p: b for p, b in _files(tmp_path).items() if p in stored} == stored  # the first one untouched
    rows = [r for p in (tmp_path / "tables" / "edit_scores").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    by_eval = {e: [r for r in rows if r["eval_id"] == e] for e in summaries}
    assert all(len(r) == 2 * EVAL_PROMPTS for r in by_eval.values())
    assert {r["steps"] for r in by_eval[first["eval_id"]]} == {2}

    # A damaged evaluation is found by verify, set aside by --repair, and redone by the same command.
    summary = folder / "evals" / first["eval_id"] / "eval.json"
    summary.write_text(summary.read_text()[:50])
    capsys.readouterr()
    assert main(["verify", "--artifacts", str(tmp_path)]) == 1
    assert f"evaluation {first['eval_id']} of edit {edit_id}: summary unreadable" in capsys.readouterr().out
    assert main(["verify", "--repair", "--artifacts", str(tmp_path)]) == 0
    assert not (folder / "evals" / first["eval_id"]).exists()
    assert main(evaluate + EVAL) == 0
    assert "already exists" not in capsys.readouterr().out
    assert _summary_of(folder, first["eval_id"])["efficacy_score_after"] == first["efficacy_score_after"]
    assert main(["verify", "--artifacts", str(tmp_path)]) == 0


def test_diffquickfix_edits_text_encoder_layer_0_and_evaluates_with_it(tmp_path, capsys):
    args = EDIT + ["--method", "diffquickfix", "--eval", "--scorer", "tiny-clip", "--artifacts", str(tmp_path)]
    assert main(args + EVAL) == 0
    edit_id, folder = _only_edit(tmp_path)
    assert edit_id.startswith("van-gogh-diffquickfix-")
    module = "text_encoder.encoder.layers.0.self_attn.out_proj"
    assert list(load_file(str(folder / "weights.safetensors"))) == [f"{module}.weight"]
    record = json.loads((folder / "edit.json").read_text())
    assert (record["method"], record["positions"], record["modules"]) == ("diffquickfix", "subject+padding", [module])
    # The published recipe's prompts: "van gogh", "a photo of / an image of / a picture of van gogh".
    assert record["token_positions"] == {"text_encoder": [2, 5, 5, 5]}
    assert record["num_keys"] == {"text_encoder": 75 + 3 * 72}  # each subject token and every position after it
    assert record["target_prompts"][1] == "a photo of a painting" and record["bias_in_values"] is True
    assert "layers" not in record
    assert module in capsys.readouterr().out
    rows = _eval_table(tmp_path)
    assert len(rows) == 2 * EVAL_PROMPTS and {r["method"] for r in rows} == {"diffquickfix"}
    # The UNet is untouched: the after-images differ only if prompts are encoded anew under the edit (no stale cache).
    before = {r["prompt"]: r["score"] for r in rows if r["phase"] == "before" and r["group"] == "efficacy"}
    after = {r["prompt"]: r["score"] for r in rows if r["phase"] == "after" and r["group"] == "efficacy"}
    assert all(before[p] != after[p] for p in before)
    assert _summary(folder)["edit_id"] == edit_id


def test_an_evaluation_on_tiny_sd1_needs_only_the_scorer_weights(tmp_path):
    """The battery on a real (tiny) model with only the scorer's weights: the run's CLIP judges zero-shot, the optional
    detectors are skipped with their reasons."""
    assert main(EDIT + ["--layers", "8,9", "--eval", "--artifacts", str(tmp_path)] + EVAL) == 0
    battery = _summary(_only_edit(tmp_path)[1])["battery"]
    assert [d["id"] for d in battery["detectors"]] == ["clip-zero-shot:tiny-clip"]
    assert {s["id"]: s["reason"] for s in battery["skipped_detectors"]} == {
        "nudenet": "not a nudity concept",
        "imagenet:microsoft/resnet-50": "family 'style' is not an object family (objects, animals)"}


def test_an_evaluation_rerun_clears_the_images_a_killed_one_left_half_written(tmp_path):
    main(EDIT + ["--layers", "8,9", "--eval", "--artifacts", str(tmp_path)] + EVAL)
    (summary,) = _only_edit(tmp_path)[1].glob("evals/*/eval.json")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname().replace("-", "_")
    debris = summary.parent / f".tmp-{host}-{int(dead.stdout)}-0123abcd-before-000-seed0.png"
    debris.write_bytes(b"\x89PNG half")
    summary.unlink()  # as if killed before its summary

    assert main(EDIT + ["--layers", "8,9", "--eval", "--artifacts", str(tmp_path)] + EVAL) == 0
    assert summary.is_file() and not debris.exists()


def test_summary_names_the_score_drop_and_the_rates_of_prompts_and_images_with_intervals():
    rows = [dict(group="target", phase="before", prompt="a painting", seed=s, score=v)
            for s, v in enumerate((0.18, 0.22))]
    before, after = {"a": (0.3, 0.3), "b": (0.25, 0.27)}, {"a": (0.1, 0.15), "b": (0.1, 0.35)}
    for phase, scores in (("before", before), ("after", after)):
        rows += [dict(group="efficacy", phase=phase, prompt=p, seed=s, score=v) for p, pair in scores.items()
                 for s, v in enumerate(pair)]
    rows += [dict(group="unrelated", phase="before", prompt="x", seed=0, score=0.4),
             dict(group="unrelated", phase="after", prompt="x", seed=0, score=0.3)]
    summary = summarize(rows)
    assert summary["target_reference"] == pytest.approx(0.2)
    # Prompt a's seed mean (0.125) falls below 0.2, b's (0.225) stays above; 3 of the 4 images fall below.
    assert (summary["efficacy_prompt_rate_before"], summary["efficacy_prompt_rate"]) == (0.0, 0.5)
    assert (summary["efficacy_image_rate_before"], summary["efficacy_image_rate"]) == (0.0, 0.75)
    assert (summary["efficacy_prompts"], summary["efficacy_images"]) == (2, 4)
    # Wilson intervals: 1 of 2 and 3 of 4 at 95%.
    assert (summary["efficacy_prompt_rate_low"], summary["efficacy_prompt_rate_high"]) == pytest.approx(
        (0.0945, 0.9055), abs=1e-4)
    assert (summary["efficacy_image_rate_low"], summary["efficacy_image_rate_high"]) == pytest.approx(
        (0.3006, 0.9544), abs=1e-4)
    # Mean score 0.28 -> 0.175 against the reference 0.2: the drop is 0.105 / 0.08.
    assert summary["efficacy_score_drop"] == pytest.approx(0.105 / 0.08)
    assert summary["efficacy_score_drop_low"] < summary["efficacy_score_drop"] < summary["efficacy_score_drop_high"]
    assert summarize(rows) == summary  # seeded: the same rows give the same intervals
    assert summary["specificity"] == pytest.approx(0.75)
    # One unrelated prompt has no spread to resample: the ratio, its count, no interval.
    assert (summary["specificity_low"], summary["specificity_high"], summary["unrelated_prompts"]) == (None, None, 1)
    assert "other_concepts_retained" not in summary and "efficacy" not in summary


def test_specificity_has_a_paired_bootstrap_interval_over_the_unrelated_prompts():
    rows = [dict(group="target", phase="before", prompt="a painting", seed=0, score=0.2)]
    before, after = (0.30, 0.32, 0.28, 0.31), (0.25, 0.30, 0.20, 0.27)
    for phase, values in (("before", before), ("after", after)):
        rows += [dict(group="unrelated", phase=phase, prompt=f"p{i}", seed=s, score=v + 0.01 * s)
                 for i, v in enumerate(values) for s in (0, 1)]
    summary = summarize(rows)

    assert summary["specificity"] == pytest.approx((sum(after) + 0.02) / (sum(before) + 0.02))
    assert summary["unrelated_prompts"] == 4
    # Four prompts, each kept 0.71-0.94 of its score: the interval lies below 1 (scores fell) and spans them.
    assert 0.70 < summary["specificity_low"] < summary["specificity"] < summary["specificity_high"] < 0.95


IF_EDIT = ["edit", "--model", "tiny-if", "--family", "style", "--concept", "van gogh", "--target", "a painting"]


def test_loco_on_if_edits_added_key_value_projections_notes_the_papers_failure_and_evaluates(tmp_path, capsys):
    args = IF_EDIT + ["--layers", "8,9", "--eval", "--scorer", "tiny-clip", "--artifacts", str(tmp_path)]
    assert main(args + EVAL) == 0
    edit_id, folder = _only_edit(tmp_path)
    assert sorted(load_file(str(folder / "weights.safetensors"))) == [
        f"unet.{path}.{m}.weight" for path in ("down_blocks.3.attentions.2", "mid_block.attentions.0")
        for m in ("add_k_proj", "add_v_proj")]
    record = json.loads((folder / "edit.json").read_text())
    assert (record["architecture"], record["token_positions"], record["target_position"]) == ("if", [1, 7, 7, 7], 1)
    assert "LocoEdit fails on DeepFloyd IF" in record["note"]
    assert f"note: {record['note']}" in capsys.readouterr().out
    rows = _eval_table(tmp_path)
    assert len(rows) == 2 * EVAL_PROMPTS and {r["edit_id"] for r in rows} == {edit_id}
    before = {r["prompt"]: r["score"] for r in rows if r["phase"] == "before" and r["group"] == "efficacy"}
    after = {r["prompt"]: r["score"] for r in rows if r["phase"] == "after" and r["group"] == "efficacy"}
    assert before.keys() == after.keys() and before != after


def test_all_layers_on_if_with_padding_edits_both_projections_of_all_22_layers(tmp_path):
    args = IF_EDIT + ["--method", "all-layers", "--positions", "subject+padding", "--artifacts", str(tmp_path)]
    assert main(args) == 0
    folder = _only_edit(tmp_path)[1]
    assert len(load_file(str(folder / "weights.safetensors"))) == 2 * 22
    record = json.loads((folder / "edit.json").read_text())
    assert record["num_keys"] == (77 - 1) + 3 * (77 - 7)  # each subject token and every position after it


FACT = ["edit", "--model", "tiny-sd1", "--family", "facts", "--concept", "the president of the united states"]


def test_a_fact_edit_is_scored_against_the_old_fact_and_the_new_one(tmp_path, capsys):
    assert main(FACT + ["--layers", "8,9", "--eval", "--scorer", "tiny-clip", "--artifacts", str(tmp_path)] + EVAL) == 0
    edit_id, folder = _only_edit(tmp_path)
    rows = _eval_table(tmp_path)
    old = [r for r in rows if r["group"] in ("efficacy", "generalization")]
    new = [r for r in rows if r["group"] == "new_fact"]
    assert {r["score_text"] for r in old} == {"donald trump"} and {r["score_text"] for r in new} == {"joe biden"}
    # The same images, scored once more: one new-fact row per old-fact row, at the same path.
    assert sorted((r["image_path"], r["phase"]) for r in new) == sorted((r["image_path"], r["phase"]) for r in old)
    [reference] = [r for r in rows if r["group"] == "new_fact_reference" and r["phase"] == "before"]
    assert reference["prompt"] == "joe biden" and reference["score_text"] == "joe biden"
    summary = _summary(folder)
    assert (summary["old_fact_text"], summary["new_fact_text"]) == ("donald trump", "joe biden")

    def mean(group_rows, phase):
        return sum(r["score"] for r in group_rows if r["phase"] == phase) / (len(group_rows) / 2)

    assert summary["new_fact_score_after"] == pytest.approx(mean(new, "after"))
    assert summary["old_fact_score_before"] == pytest.approx(mean(old, "before"))
    gain = (mean(new, "after") - mean(new, "before")) / (reference["score"] - mean(new, "before"))
    assert summary["new_fact_gain"] == pytest.approx(gain)
    assert "new fact 'joe biden'" in capsys.readouterr().out


def test_new_fact_summary_is_the_rise_towards_the_target_prompt():
    rows = [dict(group="new_fact_reference", phase="before", prompt="joe biden", score=0.40)]
    for phase, new, old in (("before", (0.18, 0.22), (0.35, 0.25)), ("after", (0.28, 0.32), (0.15, 0.25))):
        rows += [dict(group="new_fact", phase=phase, prompt=p, score=s) for p, s in zip("ab", new)]
        rows += [dict(group="efficacy", phase=phase, prompt=p, score=s) for p, s in zip("ab", old)]
    summary = summarize_new_fact(rows)
    assert summary["new_fact_gain"] == pytest.approx(0.5)  # 0.20 -> 0.30, halfway to 0.40
    assert (summary["old_fact_score_before"], summary["old_fact_score_after"]) == pytest.approx((0.30, 0.20))
    assert summarize_new_fact([r for r in rows if r["group"] == "efficacy"]) == {}
