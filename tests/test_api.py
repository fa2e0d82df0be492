"""The notebook API: pipelines held in memory wrap into models that generate exactly what the registry's do, and the
swap works inside a notebook's own pipeline calls. (The README's snippet runs against the installed package in
test_packaging.py.)"""

import subprocess
import sys

import numpy as np
import pytest
import torch

import locolab.compute as loco
from locolab.compute.models.loading import Model
from locolab.compute.models.tiny import build_tiny
from locolab.compute.settings import Settings
from locolab.contract.errors import UserError

PROMPT, TARGET = "a house in the style of van gogh", "a painting"
# swap_text's models: those that read a fixed text embedding
CROSS = ["tiny-sd1", "tiny-sd2", "tiny-sdxl", "tiny-if", "tiny-pixart", "tiny-pixart-sigma", "tiny-sana"]
LAYERS = {"tiny-sd1": ("sd1", 16), "tiny-sd2": ("sd2", 16), "tiny-sdxl": ("sdxl", 70), "tiny-if": ("if", 22)}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.slow
def test_a_pipeline_in_memory_wraps_into_the_registry_model(load, name):
    arch, count = LAYERS[name]
    wrapped = Model.from_pipeline(build_tiny(name), name=f"my-{name}")
    registered = load(name)
    assert (wrapped.arch.name, len(wrapped.layers), wrapped.name) == (arch, count, f"my-{name}")
    assert [layer.path for layer in wrapped.layers] == [layer.path for layer in registered.layers]
    assert wrapped.spec.resolution == registered.spec.resolution and not wrapped.spec.builtin
    mine = loco.generate(wrapped, [PROMPT], seeds=[3], window=(1, 3), target=TARGET, steps=2)
    theirs = loco.generate(registered, [PROMPT], seeds=[3], window=(1, 3), target=TARGET, steps=2)
    assert np.array_equal(np.asarray(mine[0]), np.asarray(theirs[0]))


def test_an_unsupported_pipeline_is_refused_by_name():
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    pipe = DDPMPipeline(UNet2DModel(sample_size=8, block_out_channels=(8, 8), norm_num_groups=4,
                                    down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2),
                        DDPMScheduler())
    with pytest.raises(UserError, match="a DDPMPipeline is not supported"):
        Model.from_pipeline(pipe)


@pytest.mark.parametrize("guidance", [7.5, 1.0])
@pytest.mark.slow
def test_swap_text_in_a_plain_pipeline_call_equals_the_batched_swap(load, guidance):
    model = load("tiny-sd1")
    with loco.swap_text(model, (8, 10), TARGET):
        plain = model.pipe(PROMPT, num_inference_steps=2, guidance_scale=guidance, output_type="np",
                           generator=torch.Generator().manual_seed(5)).images[0]
    batched = loco.generate(model, [PROMPT], seeds=[5], window=(8, 10), target=TARGET, steps=2, guidance=guidance)
    unswapped = model.pipe(PROMPT, num_inference_steps=2, guidance_scale=guidance, output_type="np",
                           generator=torch.Generator().manual_seed(5)).images[0]
    as_png = np.round(np.clip(plain, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(as_png, np.asarray(batched[0]))
    assert np.abs(unswapped - plain).max() > 1e-3  # the hooks are gone after the block


@pytest.mark.parametrize(("name", "guidance"), [(name, 4.5) for name in CROSS] + [("tiny-pixart", 1.0)])
@pytest.mark.slow
def test_swap_text_equals_generate_with_the_same_window_on_every_cross_attention_architecture(load, name, guidance):
    model = load(name)
    window = (1, 3)
    side = model.spec.resolution  # SANA's pipeline defaults to 1024 px whatever its transformer
    call = dict(num_inference_steps=2, guidance_scale=guidance, output_type="np", height=side, width=side,
                **model.arch.plain_options(model.pipe))
    with loco.swap_text(model, window, TARGET):
        plain = model.pipe(PROMPT, generator=torch.Generator().manual_seed(5), **call).images[0]
    batched = loco.generate(model, [PROMPT], seeds=[5], window=window, target=TARGET, steps=2, guidance=guidance)
    as_png = np.round(np.clip(plain, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(as_png, np.asarray(batched[0]))


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-sd3"])
@pytest.mark.slow
def test_swap_text_refuses_joint_attention_by_name(load, name):
    with pytest.raises(ValueError, match="joint attention reads a text stream"), \
            loco.swap_text(load(name), (1, 3), TARGET):
        pass


def test_swap_text_rejects_a_window_outside_the_layers(load):
    with pytest.raises(ValueError, match="invalid for 16 layers"), loco.swap_text(load("tiny-sd1"), (15, 17), TARGET):
        pass


@pytest.mark.slow
def test_generate_makes_prompt_major_images_with_the_model_defaults(load):
    model = load("tiny-sd1")
    images = loco.generate(model, ["a red car", "a blue car"], seeds=[0, 1], steps=2)
    settings = Settings.defaults(model.spec, 2)
    assert [image.size for image in images] == [(settings.width, settings.height)] * 4
    assert np.asarray(images[0]).tolist() != np.asarray(images[2]).tolist()  # prompts differ at the same seed


@pytest.mark.slow  # a fresh interpreter that imports torch
@pytest.mark.heavy  # 15 s or more under make test's load: make test-heavy
def test_importing_compute_loads_no_torch_until_an_api_name_is_used():
    code = ("import sys, compute; before = 'torch' in sys.modules; compute.load_model; "
            "print(before, 'torch' in sys.modules, sorted(compute.__all__)[:2])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["False", "True"]


def test_an_unknown_api_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'localise'"):
        loco.localise  # noqa: B018


@pytest.mark.slow  # the planted run's localization and altair's schema check: ~2 s
def test_a_localization_heat_map_is_the_dashboards_chart_for_a_notebook(tmp_path):
    import altair
    from dashboard_fixtures import PLANTED, add_planted_run

    from locolab.compute.api import Localization
    from locolab.contract import store, summaries

    add_planted_run(tmp_path)
    windows = summaries.localization(store.Store(tmp_path).connect(), 0.5, [PLANTED])
    result = Localization(str(tmp_path), PLANTED, "tiny-sd1", windows, summaries.concepts_of(windows),
                          summaries.minimal_windows_of(windows), 0.5, 0.95, {})

    chart = result.heat_map(2)

    assert isinstance(chart, altair.LayerChart)  # a notebook draws it
    spec = chart.to_dict()
    cells = next(part for part in spec["layer"] if part.get("name") == "cells")["data"]["values"]
    # Van gogh's minimal window 8-9 boxed and marked ●; 15 windows of m = 2 per concept.
    assert {cell["column"] for cell in cells} == set(range(15)) and len(cells) == 2 * 15
    assert [(box["x0"], box["x1"]) for part in spec["layer"] if part.get("name") == "boxes"
            for box in part["data"]["values"]] == [(7.5, 9.5)]
    assert [cell["column"] for cell in cells if cell["mark"] == "●"] == [8]
