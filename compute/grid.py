"""Labelled image grids (rows x columns) for quick looks at a window sweep."""

import numpy as np
from PIL import Image, ImageDraw

LABEL_HEIGHT = 14


def to_pil(image: np.ndarray) -> Image.Image:
    """(H, W, 3) float image in [0, 1] -> 8-bit PIL image (the rounding diffusers uses)."""
    return Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))


def quantize(images: np.ndarray) -> np.ndarray:
    """Float images rounded to the 8-bit values a PNG stores (what scores are computed from)."""
    return (np.clip(images, 0, 1) * 255).round().astype(np.float32) / 255


def image_grid(rows: list[list[np.ndarray]], labels: list[str], scale: int = 1) -> Image.Image:
    """Lay out ``rows`` of equally sized images under one label per column."""
    height, width = rows[0][0].shape[:2]
    cell_w, cell_h = width * scale, height * scale
    cell_w = max(cell_w, 6 * max(len(label) for label in labels))
    grid = Image.new("RGB", (cell_w * len(labels), LABEL_HEIGHT + cell_h * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for col, label in enumerate(labels):
        draw.text((col * cell_w + 2, 1), label, fill="black")
    for r, row in enumerate(rows):
        for col, image in enumerate(row):
            tile = to_pil(image).resize((width * scale, height * scale), Image.NEAREST)
            grid.paste(tile, (col * cell_w, LABEL_HEIGHT + r * cell_h))
    return grid
