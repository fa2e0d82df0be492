"""Detectors: an image batch -> probabilities over a label set, recorded by id and version in every evaluation
(docs/method.md §4.2).

- The toy world's exact detectors, one per attribute it draws: colour and background from pixels (the procedural
  checker, ``world.check_image``) and shape by template matching (the saturated pixels' best intersection over union
  with every shape at every centre and size the world draws). Exact on rendered images; the mini-CLIP reads shape
  less well (99.3% of 800 clean renders, 93.8% of 128 generated images against 100% for the templates).
- Any model: CLIP zero-shot over the edited family's concepts and its target (the run's scorer, no other weights).
- Optional detectors (NudeNet, an ImageNet classifier) are listed with the reason they were skipped.
"""

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from locolab.compute.toyworld import world
from locolab.contract.catalog.attributes import DEFAULT_PROMPT_SET, attribute_family

NONE = "none"  # the label of an image that shows no coloured shape
TOY_FAMILY_ATTRIBUTES = {"style": "background", "color": "colour", "objects": "shape"}
MIN_SHAPE_PIXELS = 8


@dataclass(frozen=True)
class Detector:
    """Reads one attribute of images: ``probabilities`` maps (N, H, W, 3) floats in [0, 1] to (N, len(labels))."""

    detector_id: str
    version: int
    attribute: str
    labels: tuple[str, ...]
    probabilities: Callable[[np.ndarray], np.ndarray]

    def detect(self, images: np.ndarray) -> list[str]:
        """The most probable label of each image."""
        return [self.labels[i] for i in np.argmax(self.probabilities(images), -1)]

    def record(self) -> dict:
        return {"id": self.detector_id, "version": self.version, "attribute": self.attribute,
                "labels": list(self.labels)}


def _one_hot(found: list[str], labels: tuple[str, ...]) -> np.ndarray:
    out = np.zeros((len(found), len(labels)))
    out[np.arange(len(found)), [labels.index(label) for label in found]] = 1.0
    return out


def _pixels(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float32) * 255.0


def _toy_colour(images: np.ndarray) -> np.ndarray:
    labels = (*world.COLOURS, NONE)
    return _one_hot([world.check_image(image)["colour"] or NONE for image in _pixels(images)], labels)


def _toy_background(images: np.ndarray) -> np.ndarray:
    return _one_hot([world.check_image(image)["background"] for image in _pixels(images)], world.BACKGROUNDS)


@functools.cache
def _shape_templates() -> tuple[np.ndarray, np.ndarray]:
    """Every shape at every centre and size ``world.sample_scene`` draws: (masks (T, SIZE*SIZE), shape index (T,))."""
    centres = range(world.SIZE // 2 - 4, world.SIZE // 2 + 5)
    masks, shapes = [], []
    for index, shape in enumerate(world.SHAPES):
        for cx in centres:
            for cy in centres:
                for radius in range(7, 11):
                    masks.append(world.shape_mask(shape, cx, cy, radius).ravel())
                    shapes.append(index)
    return np.array(masks, np.float32), np.array(shapes)


def shape_overlaps(images: np.ndarray) -> np.ndarray:
    """(N, 4): per image and shape, the best intersection over union of its saturated (coloured) pixels with that
    shape's templates."""
    pixels = _pixels(images)
    coloured = ((pixels.max(-1) - pixels.min(-1)) > 60).reshape(len(pixels), -1).astype(np.float32)
    masks, shapes = _shape_templates()
    overlap = coloured @ masks.T
    iou = overlap / (coloured.sum(1)[:, None] + masks.sum(1)[None] - overlap)
    return np.stack([iou[:, shapes == index].max(1) for index in range(len(world.SHAPES))], 1)


def shape_labels(images: np.ndarray) -> list[str]:
    """The shape each image in [0, 1] shows (its best-overlapping templates'), or ``NONE`` under ``MIN_SHAPE_PIXELS``
    coloured pixels."""
    pixels = _pixels(images)
    coloured = ((pixels.max(-1) - pixels.min(-1)) > 60).reshape(len(pixels), -1).sum(1)
    best = np.argmax(shape_overlaps(images), -1)
    return [world.SHAPES[i] if count >= MIN_SHAPE_PIXELS else NONE for i, count in zip(best, coloured)]


def _toy_shape(images: np.ndarray) -> np.ndarray:
    return _one_hot(shape_labels(images), (*world.SHAPES, NONE))


def toyworld_detectors() -> list[Detector]:
    """The toy world's exact detectors: shape, colour and background."""
    return [Detector("toyworld-shape", 1, "shape", (*world.SHAPES, NONE), _toy_shape),
            Detector("toyworld-colour", 1, "colour", (*world.COLOURS, NONE), _toy_colour),
            Detector("toyworld-background", 1, "background", world.BACKGROUNDS, _toy_background)]


def clip_zero_shot(scorer, family: str, prompt_set: str = DEFAULT_PROMPT_SET) -> Detector:
    """CLIP zero-shot classification over a family's concepts (their score texts) and its target: softmax of the
    scorer's logit scale times the image-text cosines. Its attribute is the family's name."""
    spec = attribute_family(family, prompt_set)
    labels = (*spec.concepts, spec.target)
    texts = [spec.score_text_for(concept) for concept in spec.concepts] + [spec.target]

    @torch.no_grad()
    def probabilities(images: np.ndarray) -> np.ndarray:
        text = scorer.embed_texts(texts)
        logits = torch.cat([scorer.embed_images(images[i:i + 32]) @ text.T for i in range(0, len(images), 32)])
        return torch.softmax(scorer.model.logit_scale.exp() * logits, -1).cpu().numpy().astype(np.float64)

    return Detector(f"clip-zero-shot:{scorer.scorer_id}", 1, family, labels, probabilities)


def _cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


IMAGENET_CLASSIFIER = "microsoft/resnet-50"
NUDITY_WORDS = ("nud", "naked")
OBJECT_FAMILIES = ("objects", "animals")


def skipped_detectors(meta: dict) -> list[dict]:
    """The optional detectors this evaluation does not run, each with the reason (never downloaded)."""
    concept = meta["concept"].lower()
    if not any(word in concept for word in NUDITY_WORDS):
        nudenet = "not a nudity concept"
    elif importlib.util.find_spec("nudenet") is None:
        nudenet = "the nudenet package (its ONNX detector ships in the wheel) is not installed"
    else:
        nudenet = "installed, but this version of the battery does not run it yet"
    if meta["family"] not in OBJECT_FAMILIES:
        imagenet = f"family {meta['family']!r} is not an object family ({', '.join(OBJECT_FAMILIES)})"
    elif not _cached(IMAGENET_CLASSIFIER):
        imagenet = f"no cached weights of {IMAGENET_CLASSIFIER} (never downloaded here)"
    else:
        imagenet = f"{IMAGENET_CLASSIFIER} is cached, but this version of the battery does not run it yet"
    return [{"id": "nudenet", "reason": nudenet}, {"id": f"imagenet:{IMAGENET_CLASSIFIER}", "reason": imagenet}]


def detectors_for(meta: dict, scorer) -> list[Detector]:
    """The detectors that judge an edit's images: the toy world's exact ones for a toy-world edit, and CLIP
    zero-shot over the edited family for every edit."""
    prompt_set = meta.get("prompt_set", DEFAULT_PROMPT_SET)
    found = toyworld_detectors() if prompt_set == "toyworld" else []
    return [*found, clip_zero_shot(scorer, meta["family"], prompt_set)]


def edited_attribute(meta: dict) -> tuple[str, str]:
    """(attribute, label) whose detection rate measures the edit's efficacy: the toy world's exact detector of the
    edited attribute where there is one, else the CLIP zero-shot detector of the family and the concept."""
    if meta.get("prompt_set") == "toyworld" and meta["family"] in TOY_FAMILY_ATTRIBUTES:
        return TOY_FAMILY_ATTRIBUTES[meta["family"]], meta["concept"]
    return meta["family"], meta["concept"]
