"""Seeds are drawn on the CPU for every device (as the official code does): seed N starts from
``torch.randn(shape, generator=torch.Generator().manual_seed(N))`` on every architecture."""

import pytest
import torch

from locolab.compute.generation import Case, case_generators, generate_batch, initial_noise
from locolab.compute.hooks import Hooks
from locolab.compute.models.loading import Model
from locolab.compute.models.tiny import build_tiny
from locolab.compute.settings import Settings

SETTINGS = Settings(steps=2, guidance=7.5, height=32, width=32)
SEEDS = (3, 11)


def _first_unet_input(model: Model, cases: list[Case]) -> torch.Tensor:
    seen = []

    def record(module, args, kwargs):
        if not seen:
            seen.append((args[0] if args else kwargs["sample"]).detach().clone())

    with Hooks() as hooks:
        hooks.before(model.pipe.unet, record, with_kwargs=True)
        generate_batch(model, cases, SETTINGS)
    return seen[0]


def _expected(model: Model, seed: int) -> torch.Tensor:
    """What the UNet must see first for ``seed``: the CPU float32 draw, scaled as the scheduler scales it."""
    side = SETTINGS.height // model.latent_scale
    noise = torch.randn((1, model.pipe.unet.config.in_channels, side, side),
                        generator=torch.Generator().manual_seed(seed))
    scheduler = type(model.pipe.scheduler).from_config(model.pipe.scheduler.config)
    scheduler.set_timesteps(SETTINGS.steps)
    return scheduler.scale_model_input(noise * scheduler.init_noise_sigma, scheduler.timesteps[0])


@pytest.mark.parametrize("name", ["tiny-sd1", "tiny-sd2", "tiny-sdxl", "tiny-if"])
@pytest.mark.slow
def test_initial_noise_of_seed_n_is_the_cpu_draw_of_seed_n(load, name):
    model = load(name)
    first = _first_unet_input(model, [Case("a house in the style of van gogh", seed) for seed in SEEDS])
    assert first.shape[0] == 2 * len(SEEDS)  # classifier-free guidance: [unconditional, conditional] rows
    for i, seed in enumerate(SEEDS):
        expected = _expected(model, seed)[0]
        assert torch.allclose(first[i], expected, atol=1e-6, rtol=0)
        assert torch.allclose(first[len(SEEDS) + i], expected, atol=1e-6, rtol=0)
    assert not torch.allclose(first[0], first[1])


def test_generators_are_cpu_generators_seeded_per_case():
    generators = case_generators([Case("a", 5), Case("b", 5), Case("c", 6)])
    assert {g.device.type for g in generators} == {"cpu"}
    assert [g.initial_seed() for g in generators] == [5, 5, 6]


@pytest.mark.slow
def test_noise_does_not_depend_on_the_model_device(load):
    """A model whose weights live on another device type (here ``meta``, which holds no values) gets the very
    same noise as the CPU model: the draw never touches the model's device."""
    cpu = load("tiny-sd1")
    with torch.device("meta"):
        pipe = build_tiny("tiny-sd1")
    elsewhere = Model.from_pipeline(pipe, name="tiny-sd1", resolution=64)
    assert elsewhere.device.type == "meta"
    cases = [Case("a", seed) for seed in SEEDS]
    on_meta = initial_noise(elsewhere, case_generators(cases), SETTINGS)
    assert on_meta.device.type == "cpu" and on_meta.dtype == torch.float32
    assert torch.equal(on_meta, initial_noise(cpu, case_generators(cases), SETTINGS))
    assert torch.equal(on_meta[1:], torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(SEEDS[1])))
