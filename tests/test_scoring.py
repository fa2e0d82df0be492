"""CLIP scoring: cosine of normalised embeddings, torch preprocessing, offline loading."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: a hub lookup would otherwise retry for minutes

import numpy as np
import pytest
import torch
from PIL import Image

from locolab.compute.models.tokenizer import clip_tokenizer
from locolab.compute.scoring import (
    CLIP_MEAN,
    CLIP_STD,
    PAPER_SCORER,
    TINY_SCORER,
    load_scorer,
    tiny_clip,
)
from locolab.contract.errors import UserError

TEXTS = ["style of van gogh", "a painting", "a photo of r2d2"]


@pytest.fixture(scope="module")
def scorer():
    return load_scorer(TINY_SCORER)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((3, 40, 48, 3))


def test_scores_are_cosines_in_range(scorer, images):
    scores = scorer.score(images, TEXTS)

    assert scores.shape == (3,) and scores.dtype == np.float64
    assert np.all(np.abs(scores) <= 1.0)
    assert len(set(scores.round(6))) == 3
    assert scorer.scorer_id == "tiny-clip"


def test_tiny_clip_is_deterministic_and_leaves_the_global_rng_alone(scorer, images):
    state = torch.random.get_rng_state()

    again = load_scorer(TINY_SCORER)

    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(again.score(images, TEXTS), scorer.score(images, TEXTS))


def test_score_equals_hand_computed_cosine(scorer, images):
    pixels = scorer.preprocess(images)
    tokens = scorer.tokenizer(TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        image_features = scorer.model.get_image_features(pixel_values=pixels).pooler_output.double()
        text_features = scorer.model.get_text_features(**tokens).pooler_output.double()
    expected = (image_features * text_features).sum(-1) / (image_features.norm(dim=-1) * text_features.norm(dim=-1))

    np.testing.assert_allclose(scorer.score(images, TEXTS), expected.numpy(), atol=1e-6, rtol=0)


def test_score_does_not_depend_on_batch_composition(scorer, images):
    alone = scorer.score(images[:1], TEXTS[:1])
    in_batch = scorer.score(np.concatenate([images[1:], images[:1]]), TEXTS[1:] + TEXTS[:1], batch_size=3)
    in_pairs = scorer.score(images, TEXTS, batch_size=2)

    np.testing.assert_allclose([in_batch[-1], in_pairs[0]], [alone[0], alone[0]], atol=1e-6, rtol=0)


def test_pil_images_score_like_arrays(scorer):
    pixels = np.random.default_rng(1).integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
    pil = [Image.fromarray(p) for p in pixels]

    np.testing.assert_allclose(scorer.score(pil, TEXTS[:2]), scorer.score(pixels / 255.0, TEXTS[:2]), atol=1e-6)


def test_preprocess_normalises_with_clip_mean_and_std(scorer):
    pixels = scorer.preprocess(np.full((1, 48, 64, 3), 0.5))

    assert pixels.shape == (1, 3, 32, 32)
    expected = (0.5 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(pixels[0], expected.view(3, 1, 1).expand(3, 32, 32), atol=1e-5, rtol=0)


def test_preprocess_keeps_the_centre_of_the_long_side(scorer):
    image = np.zeros((1, 32, 64, 3))
    image[:, :, 16:48] = 1.0  # white centre, black outer quarters

    pixels = scorer.preprocess(image)

    white = (1.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(pixels[0], white.view(3, 1, 1).expand(3, 32, 32))


def test_mismatched_lengths_are_rejected(scorer, images):
    with pytest.raises(ValueError, match="3 images but 2 texts"):
        scorer.score(images, TEXTS[:2])


@pytest.mark.slow
def test_local_directory_loads_the_same_scorer(tmp_path, scorer, images):
    tiny_clip().save_pretrained(tmp_path)
    clip_tokenizer().save_pretrained(tmp_path)

    local = load_scorer(str(tmp_path))

    assert local.scorer_id == str(tmp_path)
    np.testing.assert_allclose(local.score(images, TEXTS), scorer.score(images, TEXTS), atol=1e-6, rtol=0)


def test_directory_without_tokenizer_is_a_user_error(tmp_path):
    tiny_clip().save_pretrained(tmp_path)

    with pytest.raises(UserError, match="tokenizer .* has 2 tokens"):
        load_scorer(str(tmp_path))


def test_missing_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_scorer(str(tmp_path / "no-such-clip"))


def test_uncached_hub_id_offline_is_a_one_line_user_error():
    with pytest.raises(UserError, match="hub is offline") as error:
        load_scorer(PAPER_SCORER)

    assert "local directory" in str(error.value) and "\n" not in str(error.value)
