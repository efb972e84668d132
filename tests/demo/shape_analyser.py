"""Read back what a demo-model image shows: background colour, shape colour, and which shape.

Deterministic and model-free, so the quality test can score generated images:

1. the background is the median colour of the image's border ring (the demo world keeps every
   shape at least 4/64 of the image away from the border);
2. shape pixels are those far from the background colour (more than half of the largest
   distance found, and at least 40 in 0..255 RGB units); the shape colour is their median;
3. both colours are named by the nearest palette colour (``demo_data.PALETTE``);
4. the shape mask is every pixel nearer the shape colour than the background colour, reduced to
   its largest 4-connected region; its *fill ratio* (mask area / bounding-box area) names the
   shape: a square fills its box (≈ 1), a circle π/4 ≈ 0.785, a triangle 1/2.

``stray_marks`` finds what else stands out: connected regions of pixels more than
``STRAY_DISTANCE`` from the background colour, outside a thin margin around the shape, of at least
the area of a 4×4 block at 128×128 (the demo world has nothing but the one shape on a flat
background, so any such region is a mark the model should not have drawn).
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]


def load_demo_data():
    """``tools/demo_data.py`` (the demo world: palette, shapes, captions, held-out pairs)."""
    if "demo_data" not in sys.modules:
        spec = importlib.util.spec_from_file_location("demo_data", ROOT / "tools" / "demo_data.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["demo_data"] = module
        spec.loader.exec_module(module)
    return sys.modules["demo_data"]


demo_data = load_demo_data()
NAMES = list(demo_data.PALETTE)
RGB = np.array([demo_data.PALETTE[n] for n in NAMES], dtype=np.float64)

# Fill-ratio boundaries: halfway-ish between triangle (0.5) and circle (0.785), circle and square (1).
TRIANGLE_BELOW = 0.64
CIRCLE_BELOW = 0.89
MIN_SHAPE_FRACTION = 0.01  # fewer shape pixels than this share of the image: no shape found

# Stray marks, in 128×128 pixels (scaled with the image side) and 0..255 RGB units. The distance is
# small beside the palette's (nearest pair ≈ 80) and large beside a clean render's edge blur, which
# the margin takes (anti-aliasing is one 64×64 pixel, i.e. 2 pixels at 128×128; one more for the
# upscaler's sharpening halo).
STRAY_DISTANCE = 32.0
STRAY_MIN_AREA = 16  # a 4×4 block
STRAY_SHAPE_MARGIN = 3
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)
EIGHT_CONNECTED = ndimage.generate_binary_structure(2, 2)


@dataclass(frozen=True)
class Analysis:
    background: str
    colour: str | None  # None when no shape was found
    shape: str | None
    fill: float  # fill ratio of the shape's bounding box (0 when no shape)
    area: float  # the shape's share of the image


def nearest_colour(rgb: np.ndarray) -> str:
    return NAMES[int(np.argmin(((RGB - rgb) ** 2).sum(axis=1)))]


def shape_from_fill(fill: float) -> str:
    if fill < TRIANGLE_BELOW:
        return "triangle"
    return "circle" if fill < CIRCLE_BELOW else "square"


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a boolean mask."""
    labels, count = ndimage.label(mask, structure=FOUR_CONNECTED)
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def as_rgb255(image: np.ndarray) -> np.ndarray:
    """An ``[H, W, 3]`` image, uint8 (0..255) or float (0..1), as float64 in 0..255."""
    img = np.asarray(image, dtype=np.float64)
    if img.max() <= 1.0 and not np.issubdtype(np.asarray(image).dtype, np.integer):
        img = img * 255.0
    return img


def background_colour(img: np.ndarray) -> np.ndarray:
    """The median colour of the border ring (1/32 of the side wide)."""
    h = img.shape[0]
    ring = max(1, h // 32)
    border = np.concatenate([img[:ring].reshape(-1, 3), img[-ring:].reshape(-1, 3),
                             img[:, :ring].reshape(-1, 3), img[:, -ring:].reshape(-1, 3)])
    return np.median(border, axis=0)


def shape_mask(img: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """``(shape colour, shape mask)``; ``(None, empty mask)`` when nothing stands out enough."""
    distance = np.sqrt(((img - bg) ** 2).sum(axis=-1))
    far = distance > max(40.0, 0.5 * distance.max())
    if far.mean() < MIN_SHAPE_FRACTION:
        return None, np.zeros(img.shape[:2], dtype=bool)
    fg = np.median(img[far], axis=0)
    return fg, largest_region(((img - fg) ** 2).sum(axis=-1) < distance**2)


def analyse(image: np.ndarray) -> Analysis:
    """Analyse an ``[H, W, 3]`` image, uint8 (0..255) or float (0..1)."""
    img = as_rgb255(image)
    bg = background_colour(img)
    fg, mask = shape_mask(img, bg)
    if fg is None:
        return Analysis(nearest_colour(bg), None, None, 0.0, 0.0)
    ys, xs = np.nonzero(mask)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    fill = float(mask.sum() / box)
    return Analysis(nearest_colour(bg), nearest_colour(fg), shape_from_fill(fill), fill, float(mask.mean()))


def stray_marks(image: np.ndarray) -> list[int]:
    """Areas (in pixels) of the marks besides the shape, largest first; ``[]`` for a clean image.

    A mark is an 8-connected region of pixels more than ``STRAY_DISTANCE`` from the background
    colour, outside the shape grown by ``STRAY_SHAPE_MARGIN``, with at least ``STRAY_MIN_AREA``
    pixels (both given for 128×128 and scaled with the image side)."""
    img = as_rgb255(image)
    scale = img.shape[0] / 128
    bg = background_colour(img)
    _, shape = shape_mask(img, bg)
    margin = max(1, round(STRAY_SHAPE_MARGIN * scale))
    near_shape = ndimage.binary_dilation(shape, structure=EIGHT_CONNECTED, iterations=margin) if shape.any() else shape
    standing_out = (np.sqrt(((img - bg) ** 2).sum(axis=-1)) > STRAY_DISTANCE) & ~near_shape
    labels, count = ndimage.label(standing_out, structure=EIGHT_CONNECTED)
    areas = np.bincount(labels.ravel())[1:] if count else np.zeros(0, dtype=int)
    return sorted((int(a) for a in areas if a >= STRAY_MIN_AREA * scale**2), reverse=True)
