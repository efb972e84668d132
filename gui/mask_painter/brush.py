"""The mask painter's arithmetic, in numpy: a round brush dab with a hardness, strokes as dabs along a
segment, and the painter's own undo history. No Qt here.

A mask is a float32 array ``[H, W]`` in 0..1, 1 where the picture is to be repainted (as Load Image's
MASK: 1 − alpha). Pixel ``(row, col)`` covers image coordinates ``[col, col+1) × [row, row+1)``; its
centre is ``(col + 0.5, row + 0.5)``.
"""
from __future__ import annotations

import math

import numpy as np

HISTORY_LIMIT = 40
"""Undo steps the painter keeps (each a copy of the mask)."""


def dab(shape: tuple[int, int], x: float, y: float, size: float, hardness: float
        ) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """The coverage of one round dab of diameter ``size`` centred at image point ``(x, y)``: the region
    of the mask it touches and its coverage there (0..1). Coverage is 1 out to ``hardness`` × the radius
    and falls linearly to 0 at the radius (hardness 1: a hard edge). None if the dab misses the mask."""
    radius = max(size, 1.0) / 2.0
    h, w = shape
    top, bottom = max(0, math.floor(y - radius)), min(h, math.ceil(y + radius))
    left, right = max(0, math.floor(x - radius)), min(w, math.ceil(x + radius))
    if top >= bottom or left >= right:
        return None
    rows = np.arange(top, bottom, dtype=np.float32)[:, None] + 0.5
    cols = np.arange(left, right, dtype=np.float32)[None, :] + 0.5
    dist = np.sqrt((rows - y) ** 2 + (cols - x) ** 2)
    inner = radius * min(max(hardness, 0.0), 1.0)
    if radius - inner < 1e-6:
        coverage = (dist <= radius).astype(np.float32)
    else:
        coverage = np.clip((radius - dist) / (radius - inner), 0.0, 1.0).astype(np.float32)
    return (slice(top, bottom), slice(left, right)), coverage


def apply_dab(mask: np.ndarray, x: float, y: float, size: float, hardness: float, erase: bool
              ) -> tuple[slice, slice] | None:
    """Paint (raise the mask to the dab's coverage) or erase (lower it to 1 − coverage) in place; returns
    the region it touched (None: the dab missed the mask)."""
    found = dab(mask.shape, x, y, size, hardness)
    if found is None:
        return None
    region, coverage = found
    if erase:
        np.minimum(mask[region], 1.0 - coverage, out=mask[region])
    else:
        np.maximum(mask[region], coverage, out=mask[region])
    return region


def stroke_points(x0: float, y0: float, x1: float, y1: float, size: float) -> list[tuple[float, float]]:
    """Dab centres from ``(x0, y0)`` (excluded: its dab is down already) to ``(x1, y1)`` (included),
    a quarter of the diameter apart (at most one pixel apart), so a fast stroke leaves no gaps."""
    length = math.hypot(x1 - x0, y1 - y0)
    spacing = min(1.0, max(size, 1.0) / 4.0)
    steps = max(1, math.ceil(length / spacing))
    return [(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps) for i in range(1, steps + 1)]


class MaskHistory:
    """The painter's own undo: copies of the mask before each change (a stroke, invert, clear)."""

    def __init__(self, limit: int = HISTORY_LIMIT):
        self.limit = limit
        self._undo: list[np.ndarray] = []
        self._redo: list[np.ndarray] = []

    def push(self, before: np.ndarray) -> None:
        """Record the mask as it is before a change (the redo list is dropped)."""
        self._undo.append(before.copy())
        del self._undo[:-self.limit]
        self._redo.clear()

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self, current: np.ndarray) -> np.ndarray | None:
        """The mask before the last change (None if there is none); ``current`` goes to redo."""
        if not self._undo:
            return None
        self._redo.append(current.copy())
        return self._undo.pop()

    def redo(self, current: np.ndarray) -> np.ndarray | None:
        if not self._redo:
            return None
        self._undo.append(current.copy())
        return self._redo.pop()
