"""Moving the selection: nodes, reroute points and groups (with the nodes and points inside them)
follow the mouse live; one undo step on release.

Wires whose ends all move keep their shape and are only shifted; wires with one end moving get
new paths, all together once per mouse event however many nodes move.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF
from PySide6.QtGui import QMouseEvent

from .. import graphops
from ..items.group import GroupItem
from ..items.node import NodeItem
from ..items.reroute import RerouteItem
from ..items.wire import WireItem
from ..scene import GRID
from . import CLICK_SLOP, Gesture

if TYPE_CHECKING:
    from ..view import GraphView

PointKey = tuple[tuple[str, str], int]  # (wire key, index of the reroute point on it)


class MoveGesture(Gesture):
    """Started by a press at ``start`` on a selected item whose position is ``anchor`` (what
    snapping aligns to the grid)."""

    def __init__(self, view: GraphView, start: QPointF, anchor: QPointF):
        super().__init__(view)
        self.start, self.anchor = start, anchor
        self.nodes: dict[str, QPointF] = {}
        self.reroutes: dict[PointKey, QPointF] = {}
        self.groups: dict[int, QPointF] = {}
        self.moved = False
        self.rigid: list[WireItem] = []  # wires whose ends all move: translated, not redrawn
        self.loose: set[tuple[str, str]] = set()  # wires with one end moving: new path each frame
        self._collect()
        self._sort_wires()

    def _collect(self) -> None:
        gs = self.view.gs
        selected = gs.selectedItems()
        for it in selected:
            if isinstance(it, NodeItem):
                self.nodes[it.node_id] = it.pos()
            elif isinstance(it, RerouteItem):
                self.reroutes[(it.key, it.index)] = it.pos()
        for g in (it for it in selected if isinstance(it, GroupItem)):
            self.groups[g.index] = g.pos()
            for nid in graphops.nodes_in_rect(self.view.doc.graph, g.group.rect):
                item = gs.node_items.get(nid)
                if item is not None:
                    self.nodes[nid] = item.pos()
            # reroute points inside the frame move with it
            rect = g.scene_rect()
            for key, items in gs.reroute_items.items():
                for it in items:
                    if rect.contains(it.pos()):
                        self.reroutes[(key, it.index)] = it.pos()

    def _sort_wires(self) -> None:
        gs = self.view.gs
        moving = set(self.nodes)
        moving_points = {key for key, _ in self.reroutes}
        for key, wire in gs.wires.items():
            link = wire.link
            ends = (link.src in moving) + (link.dst in moving)
            if ends == 0 and key not in moving_points:
                continue
            has_points = key in gs.reroute_items
            all_points = has_points and all((key, it.index) in self.reroutes
                                            for it in gs.reroute_items[key])
            if ends == 2 and (not has_points or all_points):
                self.rigid.append(wire)
            else:
                self.loose.add(key)

    def move(self, pos: QPointF, ev: QMouseEvent) -> None:
        view, gs = self.view, self.view.gs
        delta = pos - self.start
        if not self.moved and (abs(delta.x()) + abs(delta.y())) * view.zoom < CLICK_SLOP:
            return
        self.moved = True
        if view.snap:
            target = self.anchor + delta
            snapped = QPointF(round(target.x() / GRID) * GRID, round(target.y() / GRID) * GRID)
            delta = snapped - self.anchor
        items = gs.node_items
        for nid, start in self.nodes.items():
            item = items.get(nid)
            if item is not None:
                item.setPos(start + delta)
        for (key, idx), start in self.reroutes.items():
            its = gs.reroute_items.get(key)
            if its is not None and idx < len(its):
                its[idx].setPos(start + delta)
        for idx, start in self.groups.items():
            if idx < len(gs.group_items):
                gs.group_items[idx].setPos(start + delta)
        for wire in self.rigid:  # same shape, shifted
            wire.setPos(delta)
        gs.refresh_overview()
        gs.mark_wires(self.loose)
        gs.flush_wires()  # once per mouse event, however many nodes moved

    def release(self, pos: QPointF, ev: QMouseEvent) -> None:
        if not self.moved:
            return
        self.view.doc.move(self._node_moves(), self._point_moves(), self._group_moves())
        # the move command set the rounded positions; wires follow
        self.view.gs.flush_wires()

    def _node_moves(self) -> dict[str, tuple[tuple, tuple]]:
        g, items = self.view.doc.graph, self.view.gs.node_items
        nodes = {}
        for nid in self.nodes:
            item = items.get(nid)
            if item is not None and nid in g.nodes:
                p = item.pos()
                nodes[nid] = (tuple(g.nodes[nid].pos), (round(p.x()), round(p.y())))
        return nodes

    def _point_moves(self) -> dict:
        g, gs = self.view.doc.graph, self.view.gs
        links = {}
        for key in {key for key, _ in self.reroutes}:
            link = g.link_into(*key)
            its = gs.reroute_items.get(key)
            if link is None or its is None:
                continue
            pts = [(it.pos().x(), it.pos().y()) for it in its]
            links[key] = (link, graphops.with_reroutes(link, pts))
        return links

    def _group_moves(self) -> tuple[list, list] | None:
        if not self.groups:
            return None
        g, group_items = self.view.doc.graph, self.view.gs.group_items
        new = [copy.deepcopy(grp) for grp in g.groups]
        for idx in self.groups:
            if idx < len(new) and idx < len(group_items):
                p = group_items[idx].pos()
                x, y, w, h = new[idx].rect
                new[idx].rect = (round(p.x()), round(p.y()), w, h)
        return (list(g.groups), new)
