"""Naming models: registry names, pipeline directories, hub ids, and the one-line errors for the rest."""

import json

import numpy as np
import pytest

from locolab.compute.cli import main
from locolab.compute.generation import Case, generate_batch
from locolab.compute.models.loading import layer_count, load_model
from locolab.compute.settings import Settings
from locolab.contract.catalog.registry import MODELS


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def test_unknown_name_lists_the_known_ones(capsys):
    code, err = run_cli(capsys, "layers", "--model", "sd-9")
    assert code == 2
    assert err.startswith("error: unknown model 'sd-9': use a registered name (sd-1.4, sd-1.5,")
    assert "tiny-sdxl" in err and len(err.splitlines()) == 1


def test_directory_without_model_index_is_not_a_pipeline(tmp_path, capsys):
    code, err = run_cli(capsys, "layers", "--model", str(tmp_path))
    assert code == 2
    assert "is not a diffusers pipeline (no model_index.json)" in err


def test_unsupported_transformer_pipeline_names_the_supported_ones(tmp_path, capsys):
    (tmp_path / "model_index.json").write_text(json.dumps(
        {"_class_name": "HunyuanDiTPipeline", "transformer": ["diffusers", "HunyuanDiT2DModel"]}))
    code, err = run_cli(capsys, "layers", "--model", str(tmp_path))
    assert code == 2
    assert err.endswith("is a HunyuanDiTPipeline: unsupported pipeline, use an SD-1.x, SD-2.x, SD-XL, DeepFloyd IF "
                        "stage I, PixArt-α/Σ, SANA, FLUX.1 or SD3 pipeline")


def test_hub_id_while_offline_suggests_a_local_path(capsys):
    code, err = run_cli(capsys, "layers", "--model", "someone/some-model")
    assert code == 2
    assert "the model hub is offline (HF_HUB_OFFLINE=1)" in err and "local pipeline directory" in err


def test_registered_real_model_while_offline_fails_clearly(capsys):
    code, err = run_cli(capsys, "layers", "--model", "sd-1.5")
    assert code == 2
    assert "offline" in err


@pytest.mark.slow
def test_saved_pipeline_directory_loads_and_generates_identically(load, tmp_path):
    original = load("tiny-sd1")
    original.pipe.save_pretrained(tmp_path / "pipe", safe_serialization=True)
    assert not list((tmp_path / "pipe").rglob("*.bin"))
    reloaded = load_model(str(tmp_path / "pipe"), device="cpu")
    assert reloaded.arch.name == "sd1"
    assert [layer.path for layer in reloaded.layers] == [layer.path for layer in original.layers]
    settings = Settings(2, 7.5, 64, 64)
    case = [Case("a red house", 1, (8, 10), "a house")]
    assert np.array_equal(generate_batch(reloaded, case, settings), generate_batch(original, case, settings))


@pytest.mark.parametrize("name", ["tiny-sd1", "tiny-sd2", "tiny-sdxl"])
def test_registered_layer_counts_match_the_probe(load, name):
    assert MODELS[name].num_layers == len(load(name).layers)


def test_layer_count_of_a_directory_reads_only_the_config(load, tmp_path):
    load("tiny-sdxl").pipe.unet.save_config(tmp_path / "unet")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline",
                                                           "unet": ["diffusers", "UNet2DConditionModel"]}))
    assert layer_count(str(tmp_path)) == 70


@pytest.mark.slow
def test_prompt_errors_write_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run_cli(capsys, "generate", "--model", "tiny-sd1", "--prompt", " ", "--target", "a painting",
                        "--window", "8:10", "--out", str(out))
    assert (code, err) == (2, "error: empty prompt: give a non-empty --prompt/--target")
    code, err = run_cli(capsys, "generate", "--model", "tiny-sd1", "--prompt", "a cat", "--target", "a dog",
                        "--window", "8:17", "--out", str(out))
    assert (code, err) == (2, "error: window 8:17 is invalid for 16 layers: need 0 <= START < END <= 16")
    code, err = run_cli(capsys, "generate", "--model", "tiny-sd1", "--prompt", "a cat", "--target", "a dog",
                        "--window", "9:9", "--out", str(out))
    assert (code, err) == (2, "error: bad window '9:9': START must be below END (END is exclusive)")
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_generate_writes_images_grid_and_settings(tmp_path, capsys):
    out = tmp_path / "out"
    long_prompt = "a painting of a house " * 20
    assert main(["generate", "--model", "tiny-sd1", "--prompt", long_prompt, "--target", "a painting",
                 "--window", "8:10", "--window", "0:1", "--seeds", "0,1", "--steps", "2", "--size", "32",
                 "--out", str(out)]) == 0
    assert "truncated" in capsys.readouterr().out
    meta = json.loads((out / "generation.json").read_text())
    assert meta["truncated"] == {"prompt": True, "target": False}
    assert meta["seeds"] == [0, 1] and meta["steps"] == 2 and meta["width"] == 32
    assert meta["noise"] == "cpu generator per case seed, float32 initial noise"  # as sweeps record it
    assert set(meta["versions"]) >= {"torch", "diffusers", "transformers"}
    window = [image for image in meta["images"] if image["window"] == [8, 10]]
    assert [image["layers"] for image in window][0] == ["up_blocks.1.attentions.1.transformer_blocks.0.attn2",
                                                        "up_blocks.1.attentions.2.transformer_blocks.0.attn2"]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        [f"{kind}_seed{s}.png" for kind in ("original", "target", "window_8-10", "window_0-1") for s in (0, 1)]
        + ["grid.png"])
