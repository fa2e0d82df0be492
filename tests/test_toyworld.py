"""The toy world: a deterministic generator whose ground truth the checker reads back exactly, and the committed
mini Stable Diffusion + mini-CLIP that load through the normal paths."""

from pathlib import Path

import numpy as np
import pytest

from locolab.compute.toyworld import world
from locolab.contract.errors import UserError

CHECKPOINTS = Path(__file__).resolve().parent.parent / "compute" / "checkpoints"


def test_scenes_and_images_are_pure_functions_of_the_seed():
    assert world.sample_scene(7) == world.sample_scene(7)
    assert world.render(world.sample_scene(7)).tobytes() == world.render(world.sample_scene(7)).tobytes()
    assert len({world.render(world.sample_scene(s)).tobytes() for s in range(20)}) == 20


def test_every_attribute_value_and_entity_occurs():
    scenes = [world.sample_scene(s) for s in range(2000)]
    assert {s.shape for s in scenes} == set(world.SHAPES)
    assert {s.colour for s in scenes} == set(world.COLOURS)
    assert {s.background for s in scenes} == set(world.BACKGROUNDS)
    assert {s.entity for s in scenes} - {None} == set(world.ENTITIES)


def test_entities_have_their_fixed_looks():
    for scene in (world.sample_scene(s) for s in range(500)):
        if scene.entity:
            assert (scene.shape, scene.colour, scene.background) == world.ENTITIES[scene.entity]


@pytest.mark.slow
def test_checker_is_exact_on_rendered_images():
    for seed in range(1000):
        scene = world.sample_scene(seed)
        assert world.check_image(world.render(scene)) == {"colour": scene.colour, "background": scene.background}


def test_checker_accepts_float_images():
    scene = world.Scene("cross", "blue", "dots")
    assert world.check_image(world.render(scene) / 255.0) == {"colour": "blue", "background": "dots"}


def test_captions_state_only_what_is_true_of_the_scene():
    rng = np.random.default_rng(0)
    for seed in range(500):
        scene = world.sample_scene(seed)
        stated = world.caption_attributes(world.caption(scene, rng))
        assert all(getattr(scene, key) == value for key, value in stated.items())


def test_describe_names_the_attributes():
    assert world.describe("circle", "red", "stripes") == "a red circle on stripes"
    assert world.describe("square", "blue", "dots", variant=1) == "a blue square in dotted style"
    assert world.caption_attributes("a painting of a blue square in dotted style") == \
        {"shape": "square", "colour": "blue", "background": "dots"}
    assert world.caption_attributes("the sun") == {"shape": "circle", "colour": "yellow", "background": "plain"}


@pytest.fixture(scope="module")
def toyworld():
    from locolab.compute.models.loading import load_model

    return load_model("toyworld", device="cpu")


def test_committed_model_loads_by_name_with_16_layers_in_sd1_order(toyworld):
    assert len(toyworld.layers) == 16
    assert [layer.resolution for layer in toyworld.layers] == [8, 8, 4, 4, 2, 2, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8]
    assert toyworld.layers[8].path.startswith("up_blocks.1.attentions.1")
    assert len(toyworld.pipe.tokenizer) == 49408
    assert toyworld.pipe.tokenizer("the sun").input_ids == [49406, 518, 2176, 49407]


def test_short_generation_makes_32px_images(toyworld):
    from locolab.compute.generation import Case, generate
    from locolab.compute.settings import Settings

    images = np.concatenate(list(generate(toyworld, [Case("a red circle on plain", 0)], Settings(4, 5.0, 32, 32))))
    assert images.shape == (1, 32, 32, 3)
    assert np.isfinite(images).all() and 0.0 <= images.min() and images.max() <= 1.0


@pytest.mark.slow
def test_generated_colour_and_background_follow_the_prompt(toyworld):
    from locolab.compute.generation import Case, generate
    from locolab.compute.settings import Settings

    prompts = [("a red circle on plain", "red", "plain"), ("a blue square on stripes", "blue", "stripes"),
               ("a green triangle on checkers", "green", "checkers"), ("a yellow cross on dots", "yellow", "dots")]
    settings = Settings.defaults(toyworld.spec)
    images = np.concatenate(list(generate(toyworld, [Case(p, 0) for p, _, _ in prompts], settings)))
    found = [world.check_image(image) for image in images]
    assert sum(f["colour"] == c for f, (_, c, _) in zip(found, prompts)) >= 3
    assert sum(f["background"] == b for f, (_, _, b) in zip(found, prompts)) >= 3


@pytest.mark.slow  # a LocoGen sweep of one background: 8 seeds x 19 images at 10 steps
@pytest.mark.heavy  # 15 s or more under make test's load: make test-heavy
def test_checkers_localizes_to_layer_12_with_its_interval_above_the_threshold(toyworld, tmp_path):
    import locolab.compute as loco

    result = loco.localize(toyworld, "a red square on checkers", "a red square on plain", score_text="checkers style",
                           concept="checkers", family="style", window_sizes=[1], seeds=list(range(8)),
                           root=str(tmp_path), batch_size=32, progress=False)

    (concept,) = result.concepts.to_pylist()
    assert concept["measurable"] and concept["localizes"], concept["verdict"]
    assert (concept["window_start"], concept["window_size"]) == (12, 1) and concept["drop_low"] >= 0.5
    assert concept["adjusted_over"] == 16 and concept["selection"] == "selected (optimistic)"
    assert result.layers == [12]
    # No other single layer removes the background.
    assert [row["window_start"] for row in result.windows.to_pylist() if row["localizes"]] == [12]
    assert max(row["normalized_drop"] for row in result.windows.to_pylist() if row["window_start"] != 12) < 0.5


@pytest.mark.slow  # 1.2 s: the scorer's CLIP and 128 renders
def test_committed_scorer_reads_shapes_of_ground_truth_images():
    from locolab.compute.scoring import load_scorer
    from locolab.compute.toyworld.evaluate import zero_shot

    scorer = load_scorer("toyworld-clip")
    assert len(scorer.tokenizer) == 49408
    scenes = [world.sample_scene(s) for s in range(9_000_000, 9_000_128)]
    images = np.stack([world.render(s) for s in scenes]).astype(np.float32) / 255.0
    shapes = zero_shot(scorer, images, list(world.SHAPES), [f"a {s}" for s in world.SHAPES])
    assert np.mean([s == scene.shape for s, scene in zip(shapes, scenes)]) >= 0.9


def test_committed_checkpoints_are_small():
    def size(folder: Path) -> int:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    assert size(CHECKPOINTS / "toyworld") + size(CHECKPOINTS / "toyworld-clip") <= 25 * 2**20
    # A planted variant ships its UNet and plan only; text encoder, VAE and tokenizer are the toy world's.
    planted = sorted(CHECKPOINTS.glob("toyworld-planted-*"))
    assert planted and all(size(folder) <= 8 * 2**20 for folder in planted)
    shipped = {"diffusion_pytorch_model.safetensors", "config.json", "plan.json"}
    assert all({f.name for f in folder.rglob("*") if f.is_file()} == shipped for folder in planted)


def test_the_toy_world_is_scored_by_its_own_mini_clip_everywhere():
    import yaml

    from locolab.compute.paths import PACKAGE_DIR
    from locolab.compute.scoring import EMBEDDED_SCORERS
    from locolab.contract.catalog.registry import MODELS as REGISTRY

    scorer = REGISTRY["toyworld"].scorer
    assert (EMBEDDED_SCORERS[scorer] / "config.json").is_file()
    assert yaml.safe_load((PACKAGE_DIR / "configs/toyworld.yaml").read_text())["scorer"] == scorer


def test_check_edit_reads_the_evaluation_images_back_with_the_checker(tmp_path):
    from PIL import Image

    from locolab.compute.toyworld.check_edit import check_edit
    from locolab.contract.store import write_table

    # Rendered scenes stand in for an edit's evaluation: the "after" image of the striped prompt shows dots.
    shown = {("efficacy", "before"): ("red", "stripes"), ("efficacy", "after"): ("red", "dots"),
             ("unrelated", "before"): ("blue", "checkers"), ("unrelated", "after"): ("blue", "checkers")}
    prompts = {"efficacy": "a red square on stripes", "unrelated": "a blue circle on checkers"}
    rows = []
    for (group, phase), (colour, background) in shown.items():
        path = f"edits/e/eval/{group}-{phase}.png"
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        scene = world.Scene("square", colour, background, 16, 16, 9)
        Image.fromarray(world.render(scene)).save(tmp_path / path)
        rows.append({"edit_id": "e", "model": "toyworld", "family": "style", "concept": "stripes", "group": group,
                     "prompt": prompts[group], "seed": 0, "phase": phase, "image_path": path})
    write_table("edit_scores", rows, part="e", root=tmp_path)

    checked = check_edit(tmp_path, "e")

    assert checked["efficacy"]["before"] == {"background as prompted": 1.0, "colour as prompted": 1.0,
                                             "shows stripes": 1.0}
    assert checked["efficacy"]["after"] == {"background as prompted": 0.0, "colour as prompted": 1.0,
                                            "shows stripes": 0.0}
    assert checked["unrelated"]["after"]["background as prompted"] == 1.0
    with pytest.raises(UserError, match="run the edit with --eval first"):
        check_edit(tmp_path, "missing")
