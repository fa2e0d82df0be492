"""Exact detectors for the toy world: colour and background from pixels (``world.check_image``), shape by the best
overlap of the saturated pixels with every shape mask the world can draw (the edit battery's detectors, reused);
and ``DetectorScorer``, a scorer that gives 1 when an image shows every attribute its text names and 0 otherwise (a
per-image detection, so a swept concept's mean score is its detection rate). The planted toy worlds' benchmark
measures with it: a localization method is then judged against a measurement with no error of its own, not against
the mini-CLIP's.
"""

import numpy as np

from locolab.compute.edit.detectors import NONE, shape_labels
from locolab.compute.toyworld import world
from locolab.contract.errors import UserError

DETECTOR_SCORER = "toyworld-detect"


def read_shapes(images: np.ndarray) -> list[str | None]:
    """The shape each (SIZE, SIZE, 3) image in [0, 1] shows, as the edit battery's shape detector reads it
    (``edit.detectors.shape_labels``: the best-overlapping shape template); None when too few pixels are coloured."""
    return [None if label == NONE else label for label in shape_labels(images)]


def read_images(images: np.ndarray) -> list[dict[str, str | None]]:
    """Per image: {"shape", "colour", "background"} as the detectors read them."""
    shapes = read_shapes(images)
    return [{**world.check_image(image), "shape": shape} for image, shape in zip(images, shapes)]


class DetectorScorer:
    """Scores (image, text) pairs with the exact detectors: 1.0 if the image shows every attribute the text names
    (``world.caption_attributes``: shape, colour, background, an entity's three), else 0.0. For 32x32 toy-world
    images only; it has no embeddings (edit evaluations need a CLIP scorer)."""

    scorer_id = DETECTOR_SCORER

    def score(self, images, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        if not texts:
            return np.zeros(0)
        pixels = np.stack([_unit(np.asarray(image, np.float32)) for image in images])
        if pixels.shape[1:] != (world.SIZE, world.SIZE, 3):
            raise UserError(f"scorer {DETECTOR_SCORER} reads {world.SIZE}x{world.SIZE} toy-world images, got "
                            f"{pixels.shape[1]}x{pixels.shape[2]}: use a CLIP scorer for this model")
        wanted = []
        for text in texts:
            attributes = world.caption_attributes(text)
            if not attributes:
                raise UserError(f"scorer {DETECTOR_SCORER} cannot read {text!r}: a score text must name a toy-world "
                                "shape, colour, background or entity")
            wanted.append(attributes)
        read = read_images(pixels)
        return np.array([float(all(r[k] == v for k, v in w.items())) for r, w in zip(read, wanted)])

    def embed_images(self, images):
        raise UserError(f"scorer {DETECTOR_SCORER} has no image embeddings: use toyworld-clip here")

    embed_texts = embed_images


def _unit(image: np.ndarray) -> np.ndarray:
    """An image in [0, 1] (PIL images arrive as 0-255)."""
    return image / 255.0 if image.max(initial=0) > 1.0 else image
