"""Mouse gestures on the canvas, one object each, from the press that starts one to the release
that ends it: :class:`~.move.MoveGesture` (nodes, reroute points, groups),
:class:`~.wire.WireGesture` (drag a wire from a socket), :class:`~.param.ParamDrag` (drag a number),
:class:`~.resize.GroupResize` (a group's corner) and :class:`~.pan.PanGesture`.

The view finds what is under the press, makes the gesture, sends it the mouse moves and ends it
when that button comes up; a finished gesture is one Document call, i.e. one undo step. A new
gesture is a :class:`Gesture` subclass and one branch of the view's press handling.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF
from PySide6.QtGui import QMouseEvent

if TYPE_CHECKING:
    from ..view import GraphView

CLICK_SLOP = 3
"""Pixels the mouse may move before a press becomes a drag."""


class Gesture:
    """One press-drag-release on ``view``. ``move`` follows the mouse (``pos`` in scene
    coordinates); ``release`` — of the button that started it — finishes the gesture (the view
    has already let it go). Presses of other buttons meanwhile are ignored."""

    def __init__(self, view: GraphView):
        self.view = view

    def move(self, pos: QPointF, ev: QMouseEvent) -> None:
        """The mouse moved while the button is down."""

    def release(self, pos: QPointF, ev: QMouseEvent) -> None:
        """The button came up at ``pos``: make the edit (one undo step) or nothing."""
