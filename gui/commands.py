"""Undo commands: every user edit of the graph is one QUndoCommand (one action = one undo step).

Commands hold ids and plain values (never items), change the Graph through its methods, and the
scene follows the graph's change notifications. A
command's first ``redo`` may find its change already made (a drag moves nodes live, then pushes
the move): redo sets the final state, so that is harmless.
"""
from __future__ import annotations

import copy
from typing import Any, Protocol

from PySide6.QtGui import QUndoCommand

from nodegraph.graph import Graph, Group, Link, Node

from . import graphops


class HasGraph(Protocol):
    graph: Graph


class GraphCommand(QUndoCommand):
    def __init__(self, doc: HasGraph, text: str):
        super().__init__(text)
        self.doc = doc

    @property
    def graph(self) -> Graph:
        return self.doc.graph


class AddNodes(GraphCommand):
    """Add nodes (with links among or into them, and groups): add, paste, duplicate."""

    def __init__(self, doc: HasGraph, nodes: list[Node], links: list[Link] = (),
                 groups: list[Group] = (), text: str = "Add node"):
        super().__init__(doc, text)
        self.nodes = [copy.deepcopy(n) for n in nodes]
        self.links = list(links)
        self.groups = [copy.deepcopy(g) for g in groups]
        self.replaced: list[Link] = []

    def redo(self) -> None:
        g = self.graph
        for n in self.nodes:
            g.add(copy.deepcopy(n))
        self.replaced = []
        for link in self.links:
            old = g.link_into(link.dst, link.input)
            if old is not None:
                self.replaced.append(old)
            g.add_link(link)
        if self.groups:
            g.set_groups(list(g.groups) + self.groups)

    def undo(self) -> None:
        g = self.graph
        if self.groups:
            keep = list(g.groups)
            for grp in self.groups:
                if grp in keep:
                    keep.remove(grp)
            g.set_groups(keep)
        for n in reversed(self.nodes):
            g.remove_node(n.id)
        for link in self.replaced:
            g.add_link(link)


class RemoveItems(GraphCommand):
    """Delete nodes (and every link touching them), plain links, reroute points and groups."""

    def __init__(self, doc: HasGraph, node_ids: list[str], links: list[Link] = (),
                 groups: list[int] = (), reroutes: dict[tuple[str, str], list[int]] | None = None,
                 text: str = "Delete"):
        super().__init__(doc, text)
        g = doc.graph
        self.nodes = [copy.deepcopy(g.node(i)) for i in node_ids]
        ids = set(node_ids)
        touching = {(lk.dst, lk.input): lk for lk in g.iter_links() if lk.src in ids or lk.dst in ids}
        for lk in links:
            touching[(lk.dst, lk.input)] = lk
        self.links = list(touching.values())
        self.old_groups = list(g.groups)
        self.new_groups = [grp for i, grp in enumerate(g.groups) if i not in set(groups)]
        # Reroute removals: (old link, new link) for links that stay.
        self.rerouted: list[tuple[Link, Link]] = []
        for key, idxs in (reroutes or {}).items():
            if key in touching:
                continue
            lk = g.link_into(key[0], key[1])
            if lk is None:
                continue
            pts = [p for i, p in enumerate(graphops.reroutes(lk)) if i not in set(idxs)]
            self.rerouted.append((lk, graphops.with_reroutes(lk, pts)))

    def redo(self) -> None:
        g = self.graph
        for _, new in self.rerouted:
            g.add_link(new)
        for lk in self.links:
            if g.link_into(lk.dst, lk.input) == lk:
                g.disconnect(lk.dst, lk.input)
        for n in self.nodes:
            g.remove_node(n.id)
        if self.new_groups != self.old_groups:
            g.set_groups(self.new_groups)

    def undo(self) -> None:
        g = self.graph
        if self.new_groups != self.old_groups:
            g.set_groups(self.old_groups)
        for n in self.nodes:
            g.add(copy.deepcopy(n))
        for lk in self.links:
            g.add_link(lk)
        for old, _ in self.rerouted:
            g.add_link(old)


class Connect(GraphCommand):
    """Link an output to an input, replacing whatever fed that input before."""

    def __init__(self, doc: HasGraph, link: Link, text: str = "Connect"):
        super().__init__(doc, text)
        self.link = link
        self.old = doc.graph.link_into(link.dst, link.input)

    def redo(self) -> None:
        self.graph.add_link(self.link)

    def undo(self) -> None:
        g = self.graph
        g.disconnect(self.link.dst, self.link.input)
        if self.old is not None:
            g.add_link(self.old)


class Disconnect(GraphCommand):
    def __init__(self, doc: HasGraph, links: list[Link], text: str = "Disconnect"):
        super().__init__(doc, text)
        self.links = list(links)

    def redo(self) -> None:
        for lk in self.links:
            self.graph.disconnect(lk.dst, lk.input)

    def undo(self) -> None:
        for lk in self.links:
            self.graph.add_link(lk)


class ReplaceLink(GraphCommand):
    """Swap a link for an equal one with other ``extra`` (reroute points added or moved)."""

    def __init__(self, doc: HasGraph, old: Link, new: Link, text: str = "Edit wire"):
        super().__init__(doc, text)
        self.old, self.new = old, new

    def redo(self) -> None:
        self.graph.add_link(self.new)

    def undo(self) -> None:
        self.graph.add_link(self.old)


class SetParams(GraphCommand):
    """Change one or more params: ``changes`` = [(node id, param, old, new)]."""

    def __init__(self, doc: HasGraph, changes: list[tuple[str, str, Any, Any]],
                 text: str = "Edit param"):
        super().__init__(doc, text)
        self.changes = list(changes)

    def redo(self) -> None:
        for nid, name, _, new in self.changes:
            self.graph.set_param(nid, name, new)

    def undo(self) -> None:
        for nid, name, old, _ in reversed(self.changes):
            self.graph.set_param(nid, name, old)


class Move(GraphCommand):
    """Move nodes, reroute points and groups: one drag = one command."""

    def __init__(self, doc: HasGraph, nodes: dict[str, tuple[tuple, tuple]],
                 links: dict[tuple[str, str], tuple[Link, Link]] | None = None,
                 groups: tuple[list[Group], list[Group]] | None = None, text: str = "Move"):
        super().__init__(doc, text)
        self.nodes = dict(nodes)
        self.links = dict(links or {})
        self.groups = groups

    def _apply(self, which: int) -> None:
        g = self.graph
        for nid, pair in self.nodes.items():
            if nid in g.nodes and tuple(g.nodes[nid].pos) != tuple(pair[which]):
                g.update_node(nid, pos=pair[which])
        for pair in self.links.values():
            g.add_link(pair[which])
        if self.groups is not None:
            g.set_groups(self.groups[which])

    def redo(self) -> None:
        self._apply(1)

    def undo(self) -> None:
        self._apply(0)


class SetNodeField(GraphCommand):
    """Title, colour or size of nodes: ``changes`` = [(node id, old, new)] for one field."""

    def __init__(self, doc: HasGraph, field: str, changes: list[tuple[str, Any, Any]], text: str):
        super().__init__(doc, text)
        self.field = field
        self.changes = list(changes)

    def redo(self) -> None:
        for nid, _, new in self.changes:
            self.graph.update_node(nid, **{self.field: new})

    def undo(self) -> None:
        for nid, old, _ in self.changes:
            self.graph.update_node(nid, **{self.field: old})


class SetMode(GraphCommand):
    """normal / muted / bypassed for nodes: ``changes`` = [(node id, old, new)]."""

    def __init__(self, doc: HasGraph, changes: list[tuple[str, str, str]], text: str):
        super().__init__(doc, text)
        self.changes = list(changes)

    def redo(self) -> None:
        for nid, _, new in self.changes:
            self.graph.set_mode(nid, new)

    def undo(self) -> None:
        for nid, old, _ in self.changes:
            self.graph.set_mode(nid, old)


class SetCollapsed(GraphCommand):
    def __init__(self, doc: HasGraph, changes: list[tuple[str, bool, bool]], text: str):
        super().__init__(doc, text)
        self.changes = list(changes)

    def redo(self) -> None:
        for nid, _, new in self.changes:
            graphops.set_collapsed(self.graph, nid, new)

    def undo(self) -> None:
        for nid, old, _ in self.changes:
            graphops.set_collapsed(self.graph, nid, old)


class SetControl(GraphCommand):
    """The "control after run" mode of a seed-like param."""

    def __init__(self, doc: HasGraph, node_id: str, param: str, old: str | None, new: str | None):
        super().__init__(doc, "Seed control")
        self.node_id, self.param, self.old, self.new = node_id, param, old, new

    def redo(self) -> None:
        self.graph.set_control(self.node_id, self.param, self.new)

    def undo(self) -> None:
        self.graph.set_control(self.node_id, self.param, self.old)


class SetGroups(GraphCommand):
    """Replace the list of groups (create, rename, resize or delete a group)."""

    def __init__(self, doc: HasGraph, old: list[Group], new: list[Group], text: str):
        super().__init__(doc, text)
        self.old = [copy.deepcopy(g) for g in old]
        self.new = [copy.deepcopy(g) for g in new]

    def redo(self) -> None:
        self.graph.set_groups(self.new)

    def undo(self) -> None:
        self.graph.set_groups(self.old)
