"""The toy world: 32x32 images of one coloured shape on a patterned grey background, captions, and a checker.

Attributes are independent: shape (circle, square, triangle, cross), colour (red, green, blue, yellow) and
background (plain, stripes, dots, checkers). Named entities stand in for facts: each is one fixed combination
("the sun" -> a yellow circle on a plain background). Every image is a pure function of its seed.

Captions mention any subset of the attributes in several templates; an unmentioned attribute is free (the image
drawn for "a circle" has some colour and some background). ``check_image`` reads colour and background back from
pixels: exact on rendered images, the procedural half of the quality gates on generated ones.
"""

from dataclasses import dataclass

import numpy as np

SIZE = 32
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {"red": (215, 40, 40), "green": (40, 170, 60), "blue": (45, 75, 215), "yellow": (235, 205, 35)}
BACKGROUNDS = ("plain", "stripes", "dots", "checkers")
STYLE_WORDS = {"plain": "plain", "stripes": "striped", "dots": "dotted", "checkers": "checkered"}
ENTITIES = {"the sun": ("circle", "yellow", "plain"), "the ocean": ("square", "blue", "stripes"),
            "the forest": ("triangle", "green", "dots"), "the hospital": ("cross", "red", "checkers")}
LIGHT, DARK = 225, 110
FRAMES = ("{x}", "a picture of {x}", "an image of {x}", "a photo of {x}", "a painting of {x}")


@dataclass(frozen=True)
class Scene:
    """What one image shows; ``entity`` names it when it is drawn as a fact."""

    shape: str
    colour: str
    background: str
    cx: int = SIZE // 2
    cy: int = SIZE // 2
    radius: int = 9
    entity: str | None = None


def background_mask(background: str) -> np.ndarray:
    """The (SIZE, SIZE) boolean mask of a background's dark pixels, at the world's fixed phase."""
    y, x = np.mgrid[:SIZE, :SIZE]
    if background == "plain":
        return np.zeros((SIZE, SIZE), bool)
    if background == "stripes":
        return (y // 4) % 2 == 0
    if background == "dots":
        return ((y % 8) // 2 == 1) & ((x % 8) // 2 == 1)
    if background == "checkers":
        return ((y // 4) + (x // 4)) % 2 == 0
    raise ValueError(f"unknown background {background!r}")


def shape_mask(shape: str, cx: int, cy: int, r: int) -> np.ndarray:
    """The (SIZE, SIZE) boolean mask of a shape centred at (cx, cy) with half-size r."""
    y, x = np.mgrid[:SIZE, :SIZE]
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        side = round(r * 0.85)
        return (abs(dx) <= side) & (abs(dy) <= side)
    if shape == "triangle":
        # Apex up, base at cy + r: half-width grows linearly from the apex.
        return (dy >= -r) & (dy <= r) & (abs(dx) * 2 <= (dy + r))
    if shape == "cross":
        arm = max(2, r // 3)
        return ((abs(dx) <= arm) & (abs(dy) <= r)) | ((abs(dy) <= arm) & (abs(dx) <= r))
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene) -> np.ndarray:
    """A (SIZE, SIZE, 3) uint8 image of ``scene``."""
    image = np.full((SIZE, SIZE, 3), LIGHT, np.uint8)
    image[background_mask(scene.background)] = DARK
    image[shape_mask(scene.shape, scene.cx, scene.cy, scene.radius)] = COLOURS[scene.colour]
    return image


ENTITY_RATE = 0.15  # the share of scenes drawn as an entity


def sample_scene(seed: int, entity_rate: float = ENTITY_RATE) -> Scene:
    """A random scene, a pure function of ``seed``: uniform attributes (or an entity), jittered place and size."""
    rng = np.random.default_rng(seed)
    cx, cy = (int(v) for v in rng.integers(SIZE // 2 - 4, SIZE // 2 + 5, size=2))
    radius = int(rng.integers(7, 11))
    if rng.random() < entity_rate:
        entity = list(ENTITIES)[rng.integers(len(ENTITIES))]
        shape, colour, background = ENTITIES[entity]
        return Scene(shape, colour, background, cx, cy, radius, entity)
    return Scene(SHAPES[rng.integers(4)], list(COLOURS)[rng.integers(4)], BACKGROUNDS[rng.integers(4)],
                 cx, cy, radius)


def describe(shape: str | None, colour: str | None, background: str | None, variant: int = 0) -> str:
    """A phrase naming the given attributes (None = not mentioned); ``variant`` picks the wording."""
    noun = shape or "object"
    if colour is None and shape is None and background is None:
        return "an object"
    if shape is None and background is None and variant % 2:
        return f"the color {colour}"
    thing = f"a {colour} {noun}" if colour else ("an object" if noun == "object" else f"a {noun}")
    if background is None:
        return thing
    if shape is None and colour is None:
        return f"{background} style" if variant % 2 == 0 else f"an object on {background}"
    if variant % 2:
        return f"{thing} in {STYLE_WORDS[background]} style"
    return f"{thing} on {background}"


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A random caption true of ``scene``: each attribute is mentioned with probability 3/4, in a random frame."""
    frame = FRAMES[rng.integers(len(FRAMES))]
    if scene.entity is not None and rng.random() < 0.7:
        return frame.format(x=scene.entity)
    keep = rng.random(3) < 0.75
    phrase = describe(scene.shape if keep[0] else None, scene.colour if keep[1] else None,
                      scene.background if keep[2] else None, int(rng.integers(2)))
    return frame.format(x=phrase)


def caption_attributes(text: str) -> dict[str, str]:
    """The attributes a caption states: {"shape"|"colour"|"background": value}, entities expanded."""
    for entity, (shape, colour, background) in ENTITIES.items():
        if entity in text:
            return {"shape": shape, "colour": colour, "background": background}
    found = {}
    words = text.replace(",", " ").split()
    for shape in SHAPES:
        if shape in words:
            found["shape"] = shape
    for colour in COLOURS:
        if colour in words:
            found["colour"] = colour
    for background in BACKGROUNDS:
        if background in words or STYLE_WORDS[background] in words:
            found["background"] = background
    return found


def check_image(image: np.ndarray) -> dict[str, str | None]:
    """Read colour and background from pixels.

    Args:
        image: (SIZE, SIZE, 3) uint8, or floats in [0, 1].

    Returns:
        {"colour": nearest palette colour of the saturated pixels (None if under 8 such pixels),
         "background": the pattern whose dark/light layout best matches the unsaturated pixels}.
    """
    pixels = np.asarray(image, np.float32)
    if pixels.max() <= 1.0:
        pixels = pixels * 255.0
    spread = pixels.max(-1) - pixels.min(-1)
    saturated = spread > 60
    colour = None
    if saturated.sum() >= 8:
        mean = pixels[saturated].mean(0)
        names = list(COLOURS)
        colour = names[int(np.argmin([np.sum((mean - COLOURS[n]) ** 2) for n in names]))]
    grey = spread < 40
    dark = pixels.mean(-1) < (LIGHT + DARK) / 2
    agreement = [((dark == background_mask(b)) & grey).sum() for b in BACKGROUNDS]
    return {"colour": colour, "background": BACKGROUNDS[int(np.argmax(agreement))]}


def all_combinations() -> list[tuple[str, str, str]]:
    """Every (shape, colour, background)."""
    return [(s, c, b) for s in SHAPES for c in COLOURS for b in BACKGROUNDS]
