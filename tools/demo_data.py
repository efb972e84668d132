"""The demo model's world: one coloured shape on a plain background, drawn with Pillow.

This module is the single definition of that world — palette, shapes, captions, and which
combinations training never sees — shared by ``tools/train_demo.py`` and the quality test in
``tests/demo/``. It imports only numpy and Pillow.

An image is ``size``×``size`` RGB: a background of one palette colour and one axis-aligned shape of
another colour — a circle, a square, or an upright triangle whose base is the bottom side of its
bounding box — with a random side between 36% and 70% of the image, at least 4/64 of the image
away from every border. Shapes are drawn at 4× and box-filtered down, so edges are anti-aliased.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

# Names are single CLIP tokens; colours are far apart (nearest pair ≈ 80 in RGB distance).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 50, 180),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

# How a caption may say it. The quality test uses the first one.
PHRASINGS: tuple[str, ...] = (
    "{a_colour} {colour} {shape} on {a_background} {background} background",
    "{colour} {shape}, {background} background",
    "a picture of {a_colour} {colour} {shape} on {background}",
    "{a_background} {background} background with {a_colour} {colour} {shape}",
)

# Held out: shape colour i on background colour i+3 (mod 8), with every shape. Each colour is the
# shape colour of one held-out pair and the background of another, so a model that ignored the
# prompt would score chance (1/8) on the held-out colours.
HELD_OUT_OFFSET = 3


def held_out_pairs() -> list[tuple[str, str]]:
    """(shape colour, background colour) pairs that never occur together in training."""
    n = len(COLOURS)
    return [(COLOURS[i], COLOURS[(i + HELD_OUT_OFFSET) % n]) for i in range(n)]


def held_out_combinations() -> list[tuple[str, str, str]]:
    """Every (colour, shape, background) the training data never shows: the quality test's prompts."""
    return [(c, s, b) for c, b in held_out_pairs() for s in SHAPES]


def training_combinations() -> list[tuple[str, str, str]]:
    """Every (colour, shape, background) with two different colours that is not held out."""
    held = set(held_out_pairs())
    return [(c, s, b) for c in COLOURS for b in COLOURS if c != b and (c, b) not in held for s in SHAPES]


def all_combinations() -> list[tuple[str, str, str]]:
    """Every (colour, shape, background) with two different colours, held-out ones included."""
    return [(c, s, b) for c in COLOURS for b in COLOURS if c != b for s in SHAPES]


def caption(colour: str, shape: str, background: str, phrasing: int = 0) -> str:
    """The caption of a scene in one of the PHRASINGS ("an orange circle on a blue background")."""
    return PHRASINGS[phrasing].format(colour=colour, shape=shape, background=background,
                                      a_colour=_article(colour), a_background=_article(background))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class Scene:
    """One image's content: what, where (top-left corner and side of the shape's box, in 0..1 units)."""

    colour: str
    shape: str
    background: str
    x: float
    y: float
    side: float

    def caption(self, phrasing: int = 0) -> str:
        return caption(self.colour, self.shape, self.background, phrasing)


MIN_SIDE, MAX_SIDE, MARGIN = 0.36, 0.70, 4 / 64


def random_scene(rng: random.Random, combinations: list[tuple[str, str, str]]) -> Scene:
    """A scene of a random combination, random size and position."""
    colour, shape, background = combinations[rng.randrange(len(combinations))]
    side = rng.uniform(MIN_SIDE, MAX_SIDE)
    x = rng.uniform(MARGIN, 1 - MARGIN - side)
    y = rng.uniform(MARGIN, 1 - MARGIN - side)
    return Scene(colour, shape, background, x, y, side)


def render(scene: Scene, size: int = 64, supersample: int = 4) -> np.ndarray:
    """The scene as an ``[size, size, 3]`` uint8 array."""
    big = size * supersample
    image = Image.new("RGB", (big, big), PALETTE[scene.background])
    _draw_shape(ImageDraw.Draw(image), scene, big, fill=PALETTE[scene.colour])
    return np.asarray(image.resize((size, size), Image.Resampling.BOX))


def edges(scene: Scene, size: int = 64, width: float = 1.5, supersample: int = 4) -> np.ndarray:
    """The shape's outline, white lines ``width`` pixels wide (at ``size``) on black, as an ``[size,
    size, 3]`` uint8 array: the demo ControlNet's hint (what an edge detector or a pen would give)."""
    big = size * supersample
    image = Image.new("L", (big, big), 0)
    _draw_shape(ImageDraw.Draw(image), scene, big, outline=255, width=max(1, round(width * supersample)))
    return np.repeat(np.asarray(image.resize((size, size), Image.Resampling.BOX))[..., None], 3, axis=-1)


def silhouette(scene: Scene, size: int = 64) -> np.ndarray:
    """Where the shape is: a boolean ``[size, size]`` mask of the pixels it covers at least half."""
    image = Image.new("L", (size * 4, size * 4), 0)
    _draw_shape(ImageDraw.Draw(image), scene, size * 4, fill=255)
    return np.asarray(image.resize((size, size), Image.Resampling.BOX)) >= 128


def _draw_shape(draw: ImageDraw.ImageDraw, scene: Scene, big: int, fill=None, outline=None, width: int = 1) -> None:
    """Draw the scene's shape on a ``big``×``big`` canvas: filled with ``fill`` and/or outlined."""
    x0, y0 = scene.x * big, scene.y * big
    x1, y1 = x0 + scene.side * big, y0 + scene.side * big
    if scene.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill, outline=outline, width=width)
    elif scene.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill, outline=outline, width=width)
    elif scene.shape == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill, outline=outline, width=width)
    else:
        raise ValueError(f"unknown shape {scene.shape!r}; expected one of {', '.join(SHAPES)}")


def scenes(seed: int, count: int, combinations: list[tuple[str, str, str]] | None = None) -> Iterator[Scene]:
    """``count`` reproducible random scenes (training combinations unless given)."""
    rng = random.Random(seed)
    combos = training_combinations() if combinations is None else combinations
    for _ in range(count):
        yield random_scene(rng, combos)
