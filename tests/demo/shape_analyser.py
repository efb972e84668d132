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
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    best, best_size, current = 0, 0, 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        current += 1
        labels[y0, x0] = current
        stack, size = [(y0, x0)], 0
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    stack.append((ny, nx))
        if size > best_size:
            best, best_size = current, size
    return labels == best if best else np.zeros_like(mask)


def analyse(image: np.ndarray) -> Analysis:
    """Analyse an ``[H, W, 3]`` image, uint8 (0..255) or float (0..1)."""
    img = np.asarray(image, dtype=np.float64)
    if img.max() <= 1.0 and not np.issubdtype(np.asarray(image).dtype, np.integer):
        img = img * 255.0
    h, w, _ = img.shape
    ring = max(1, h // 32)
    border = np.concatenate([img[:ring].reshape(-1, 3), img[-ring:].reshape(-1, 3),
                             img[:, :ring].reshape(-1, 3), img[:, -ring:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    background = nearest_colour(bg)
    distance = np.sqrt(((img - bg) ** 2).sum(axis=-1))
    far = distance > max(40.0, 0.5 * distance.max())
    if far.mean() < MIN_SHAPE_FRACTION:
        return Analysis(background, None, None, 0.0, 0.0)
    fg = np.median(img[far], axis=0)
    to_fg = ((img - fg) ** 2).sum(axis=-1)
    mask = largest_region(to_fg < distance**2)
    ys, xs = np.nonzero(mask)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    fill = float(mask.sum() / box)
    return Analysis(background, nearest_colour(fg), shape_from_fill(fill), fill, float(mask.mean()))
