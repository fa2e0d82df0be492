"""The toy world's exact detectors and the scorer made of them (``toyworld-detect``)."""

import numpy as np
import pytest
from PIL import Image

from locolab.compute.scoring import NAMED_SCORERS, load_scorer
from locolab.compute.toyworld import world
from locolab.compute.toyworld.detect import DETECTOR_SCORER, DetectorScorer, read_images
from locolab.contract.errors import UserError


def _scenes(n: int, seed: int = 0) -> list[world.Scene]:
    rng = np.random.default_rng(seed)
    return [world.sample_scene(int(s), entity_rate=0.0) for s in rng.integers(0, 2**31, n)]


def test_every_rendered_scene_is_read_exactly():
    scenes = _scenes(400)
    read = read_images(np.stack([world.render(s) for s in scenes]).astype(np.float32) / 255)
    for scene, found in zip(scenes, read):
        assert found == {"shape": scene.shape, "colour": scene.colour, "background": scene.background}, scene
    assert len({s.shape for s in scenes}) == 4 and len({(s.cx, s.cy, s.radius) for s in scenes}) > 100


def test_the_shape_is_read_despite_noise_and_a_blank_image_has_none():
    scene = world.Scene("triangle", "green", "checkers", cx=13, cy=19, radius=8)
    noisy = world.render(scene) / 255 + np.random.default_rng(1).normal(0, 0.06, (32, 32, 3))
    blank = np.full((32, 32, 3), world.LIGHT / 255)
    assert [r["shape"] for r in read_images(np.stack([noisy.clip(0, 1), blank]))] == ["triangle", None]


def test_the_scorer_gives_one_when_the_image_shows_every_named_attribute():
    ocean = world.render(world.Scene(*world.ENTITIES["the ocean"]))  # a blue square on stripes
    images = np.stack([ocean] * 7).astype(np.float32) / 255
    texts = ["a blue square", "the color blue", "stripes style", "the ocean", "a red square", "dots style", "the sun"]
    assert DetectorScorer().score(images, texts).tolist() == [1, 1, 1, 1, 0, 0, 0]
    # PIL images (0-255) score as the float arrays do.
    pil = [Image.fromarray(ocean)] * 2
    assert DetectorScorer().score(pil, ["a square on stripes", "a circle"]).tolist() == [1, 0]


def test_the_scorer_refuses_what_it_cannot_read():
    image = world.render(world.Scene("circle", "red", "plain")).astype(np.float32) / 255
    with pytest.raises(UserError, match=r"reads 32x32 toy-world images, got 64x64: use a CLIP scorer"):
        DetectorScorer().score(np.zeros((1, 64, 64, 3)), ["a circle"])
    with pytest.raises(UserError, match=r"cannot read 'a dog': a score text must name a toy-world shape"):
        DetectorScorer().score(image[None], ["a dog"])
    with pytest.raises(UserError, match=r"has no image embeddings: use toyworld-clip"):
        DetectorScorer().embed_images(image[None])


def test_the_scorer_is_named_and_loaded_by_name():
    from locolab.compute.sweep.config import check_scorer

    assert DETECTOR_SCORER in NAMED_SCORERS
    scorer = load_scorer(DETECTOR_SCORER)
    assert isinstance(scorer, DetectorScorer) and scorer.scorer_id == "toyworld-detect"
    check_scorer(DETECTOR_SCORER, "test")  # a config may name it
