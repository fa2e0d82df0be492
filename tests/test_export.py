"""Portable edits: a LoRA export loaded by a plain diffusers pipeline reproduces the edited images; the diffusers and
safetensors exports hold the edit; every export carries its card; bad requests are one line."""

import functools
import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from locolab.compute.edit.closed_form import applied
from locolab.compute.edit.export import CARD_JSON, CARD_README, LORA_FILE, export_edit
from locolab.compute.edit.request import build_edit, make_request
from locolab.contract.errors import UserError
from locolab.contract.specs import EditSpec

SPECS = {"loco": {"method": "loco", "layers": (8, 9)}, "uce": {"method": "uce"}, "time": {"method": "time"}}
RANKS = {"loco": 4, "uce": 4, "time": 31}  # one per erased key (four prompts); TIME: 31 of 32 directions (measured)


def _images(pipe) -> np.ndarray:
    return pipe(["a house in the style of van gogh", "van gogh"], num_inference_steps=3, height=32, width=32,
                generator=torch.Generator().manual_seed(0), output_type="np").images


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """tiny-sd1 saved and read back by diffusers alone: what a user without LocoLab holds."""
    from tests.conftest import _model

    folder = tmp_path_factory.mktemp("plain")
    _model("tiny-sd1").pipe.save_pretrained(folder)
    return folder


@functools.cache
def _built(method: str):
    from tests.conftest import _model

    return build_edit(_model("tiny-sd1"), make_request(EditSpec("tiny-sd1", "style", "van gogh", **SPECS[method]),
                                                       "float32"))


def _edit(load, method: str):
    """Each method's edit of van gogh on tiny-sd1, built once (exports do not change it)."""
    return _built(method)


@pytest.mark.parametrize("method", ["loco", "uce", "time"])
@pytest.mark.slow
def test_a_lora_export_loaded_by_plain_diffusers_reproduces_the_edited_images(load, plain, tmp_path, method):
    pytest.importorskip("peft", reason="diffusers' load_lora_weights needs peft (requirements.txt)")
    model, edit = load("tiny-sd1"), _edit(load, method)
    out, card = export_edit(model, edit, tmp_path / "lora", "lora")
    pipe = StableDiffusionPipeline.from_pretrained(plain).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    before = _images(pipe)
    with applied(model, edit):
        expected = _images(model.pipe)
    pipe.load_lora_weights(str(out))
    loaded = _images(pipe)
    difference = float(np.abs(loaded - expected).max())
    print(f"{method}: LoRA rank {card['lora']['rank']}, weight error {card['lora']['max_error']:.2e}, "
          f"largest image difference {difference:.2e} (the edit moved pixels by {np.abs(expected - before).max():.2e})")
    moved = float(np.abs(expected - before).max())
    assert moved > 1e-3 and difference < moved / 100
    assert card["lora"]["max_error"] < 1e-6 and card["lora"]["truncated_to"] is None
    assert card["lora"]["rank"] == RANKS[method] and len(card["lora"]["ranks"]) == (4 if method == "loco" else 32)


@pytest.mark.slow
def test_a_truncated_lora_states_its_error(load, tmp_path):
    model, edit = load("tiny-sd1"), _edit(load, "uce")
    _, card = export_edit(model, edit, tmp_path / "lora", "lora", rank=1)
    state = load_file(str(tmp_path / "lora" / LORA_FILE))
    assert card["lora"]["rank"] == 1 and all(v.shape[0] == 1 for k, v in state.items() if "lora_A" in k)
    assert card["lora"]["max_error"] > 1e-4  # rank 1 cannot hold a rank-4 change
    assert "truncated to: 1" in (tmp_path / "lora" / CARD_README).read_text()


@pytest.mark.slow
def test_a_diffusers_export_is_the_edited_pipeline(load, tmp_path):
    model, edit = load("tiny-sd1"), _edit(load, "loco")
    out, _ = export_edit(model, edit, tmp_path / "pipe", "diffusers")
    pipe = StableDiffusionPipeline.from_pretrained(out).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    with applied(model, edit):
        expected = _images(model.pipe)
    assert np.abs(_images(pipe) - expected).max() < 1e-5  # float error of a reloaded pipeline


def test_a_safetensors_export_holds_the_edit_and_its_card(load, tmp_path):
    edit = _edit(load, "loco")
    out, _ = export_edit(None, edit, tmp_path / "own", "safetensors")
    weights = load_file(str(out / "weights.safetensors"))
    assert weights.keys() == edit.weights.keys() and all(torch.equal(weights[k], edit.weights[k]) for k in weights)
    card = json.loads((out / CARD_JSON).read_text())
    assert (card["model"], card["method"], card["concepts"], card["layers"]) == ("tiny-sd1", "loco", ["van gogh"],
                                                                                 [8, 9])
    assert card["settings"]["lambda"] == 0.01 and card["locolab_version"] and "git_commit" in card


def test_a_neuron_edit_exports_only_in_its_own_format(load, tmp_path):
    model = load("tiny-sd1")
    edit = build_edit(model, make_request(EditSpec("tiny-sd1", "style", "van gogh", method="neuron", layers=(8,),
                                                   topk=2), "float32"))
    with pytest.raises(UserError, match="neuron edit: it clamps activations.*use --format safetensors"):
        export_edit(model, edit, tmp_path / "x", "lora")
    out, card = export_edit(None, edit, tmp_path / "own", "safetensors")
    assert (out / "units.safetensors").is_file() and "clamp" not in card.get("lora", "") and "note" in card


def test_an_existing_non_empty_out_is_refused(load, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(UserError, match="exists and is not empty") as refused:
        export_edit(None, _edit(load, "loco"), tmp_path / "taken", "safetensors")
    assert "\n" not in str(refused.value) and (tmp_path / "taken" / "file").read_text() == "x"
