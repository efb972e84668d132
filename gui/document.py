"""A document: one graph, its file, its undo stack, and the edits a user can make to it.

Every edit method checks what it is asked (types compatible, no cycle, ...) and pushes exactly
one undo command (or one macro) onto ``undo``. Views and panels call these methods and never
touch the graph directly; they follow the graph through its listeners.
"""
from __future__ import annotations

import copy
import os
import uuid
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from nodegraph import format as graph_format
from nodegraph.graph import Graph, Group, Link, Node
from nodegraph.registry import Registry

from . import commands, defaults, graphops

SHIPPED = Path(__file__).resolve().parent.parent / "examples"
"""The example graphs that come with NodeGraph: they open as untitled copies."""


class Document(QObject):
    """``graph_replaced`` fires when a new graph is loaded (the scene rebuilds);
    ``path_changed`` when the file name changes."""

    graph_replaced = Signal()
    path_changed = Signal()

    def __init__(self, registry: Registry, graph: Graph | None = None, path: Path | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.registry = registry
        self.graph = graph if graph is not None else Graph()
        self.path: Path | None = Path(path) if path else None
        self.undo = QUndoStack(self)
        self.doc_id = uuid.uuid4().hex
        self.recovered = False
        self.origin: Path | None = None
        """The file an untitled copy was opened from (a shipped example, a read-only file)."""

    # -- files -----------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return not self.undo.isClean() or self.recovered

    def display_name(self) -> str:
        if self.path:
            return self.path.name
        return f"{self.origin.name} (copy)" if self.origin else "untitled"

    def replace_graph(self, graph: Graph, path: Path | None, origin: Path | None = None) -> None:
        """Show another graph (Open, New, Recover): the undo history starts over."""
        self.undo.clear()
        self.graph = graph
        self.path = Path(path) if path else None
        self.origin = origin
        self.recovered = False
        self.graph_replaced.emit()
        self.path_changed.emit()

    def open(self, path: str | os.PathLike[str]) -> Any:
        """Load a graph file, a ComfyUI workflow or prompt, or a PNG/WebP carrying one (GraphLoadError
        if it cannot). Returns the ``nodegraph.opening.Opened`` (format, import report)."""
        from nodegraph.opening import open_graph

        opened = open_graph(path, self.registry.nodes)
        # An image or a ComfyUI file is not the graph's file, nor is a shipped example or a file we
        # cannot write: the graph opens untitled, and saving asks for a name.
        keep = opened.keeps_path and not read_only(Path(path))
        self.replace_graph(opened.graph, Path(path) if keep else None,
                           None if keep or not opened.keeps_path else Path(path))
        return opened

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the graph atomically (to ``path``, else to its file)."""
        target = Path(path) if path else self.path
        if target is None:
            raise ValueError("the document has no file name yet; use Save As")
        graph_format.save(self.graph, target)
        if self.path != target:
            self.path = target
            self.origin = None
            self.path_changed.emit()
        self.recovered = False
        self.undo.setClean()
        return target

    # -- types -----------------------------------------------------------------------------
    def output_type(self, node_id: str, output: str) -> str | None:
        node = self.graph.nodes.get(node_id)
        spec = self.registry.get(node.type) if node is not None else None
        if spec is None:
            return None
        out = spec.output(output)
        return out.type if out is not None else None

    def input_type(self, node_id: str, name: str) -> str | None:
        """Socket type of an input, or of a param (a link into a param overrides its value)."""
        node = self.graph.nodes.get(node_id)
        spec = self.registry.get(node.type) if node is not None else None
        if spec is None:
            return None
        inp = spec.input(name)
        if inp is not None:
            return inp.type
        p = spec.param(name)
        return p.socket_type if p is not None else None

    def can_connect(self, src: str, output: str, dst: str, input_name: str) -> bool:
        """Whether the output may feed the input: types compatible, no self-link, no cycle."""
        if src == dst:
            return False
        out_t, in_t = self.output_type(src, output), self.input_type(dst, input_name)
        if out_t is None or in_t is None or not self.registry.compatible(out_t, in_t):
            return False
        return dst not in self.graph.upstream([src]).nodes

    # -- edits -----------------------------------------------------------------------------
    options = None
    """The run options choices are listed with (the window sets its session's)."""

    def new_node(self, type_id: str, pos: tuple[float, float]) -> Node:
        """A node of ``type_id`` with a fresh id, not added yet: default params made to work (the
        first model file, the checkpoint's native size; see gui.defaults), at the free spot
        nearest ``pos`` when the canvas set ``placer``."""
        spec = self.registry[type_id]
        params = defaults.new_node_params(spec, self.graph, self.registry, self.options)
        node = Node(self.graph.new_id(), type_id, params, (round(pos[0]), round(pos[1])))
        if self.placer is not None:
            node.pos = self.placer(node)
        return node

    def add_node(self, type_id: str, pos: tuple[float, float],
                 link_from: tuple[str, str] | None = None,
                 link_to: tuple[str, str] | None = None) -> str:
        """Add a node; optionally connect ``link_from`` = (node, output) into its first
        compatible input, or its first compatible output into ``link_to`` = (node, input).
        One undo step. Returns the new node's id."""
        node = self.new_node(type_id, pos)
        spec = self.registry[type_id]
        links: list[Link] = []
        if link_from is not None:
            t = self.output_type(*link_from)
            names = accepting_inputs(spec, t, self.registry) if t is not None else []
            if names:
                links.append(Link(link_from[0], link_from[1], node.id, names[0]))
        if link_to is not None:
            t = self.input_type(*link_to)
            names = providing_outputs(spec, t, self.registry) if t is not None else []
            if names:
                links.append(Link(node.id, names[0], link_to[0], link_to[1]))
        self.undo.push(commands.AddNodes(self, [node], links,
                                         text=f"Add {spec.display_name}"))
        return node.id

    def connect(self, src: str, output: str, dst: str, input_name: str) -> bool:
        """Connect if allowed (replacing the input's old link); False if refused."""
        if not self.can_connect(src, output, dst, input_name):
            return False
        old = self.graph.link_into(dst, input_name)
        if old is not None and (old.src, old.output) == (src, output):
            return True
        self.undo.push(commands.Connect(self, Link(src, output, dst, input_name)))
        return True

    def disconnect(self, dst: str, input_name: str) -> None:
        link = self.graph.link_into(dst, input_name)
        if link is not None:
            self.undo.push(commands.Disconnect(self, [link]))

    def delete(self, node_ids: list[str], links: list[Link] = (), groups: list[int] = (),
               reroutes: dict[tuple[str, str], list[int]] | None = None) -> None:
        if not (node_ids or links or groups or reroutes):
            return
        n = len(node_ids)
        text = f"Delete {n} node{'s' if n != 1 else ''}" if n else "Delete"
        self.undo.push(commands.RemoveItems(self, list(node_ids), list(links), list(groups),
                                            reroutes, text))

    def set_param(self, node_id: str, name: str, value: Any, old: Any = None,
                  has_old: bool = False) -> None:
        """Set a param (``old``: its value before a live drag, else read from the node)."""
        node = self.graph.node(node_id)
        if not has_old:
            spec = self.registry.get(node.type)
            p = spec.param(name) if spec is not None else None
            old = node.params.get(name, p.default if p is not None else None)
        if old == value and type(old) is type(value) and node.params.get(name) == value:
            return
        self.undo.push(commands.SetParams(self, [(node_id, name, old, value)],
                                          f"Edit {name}"))

    def set_title(self, node_id: str, title: str | None) -> None:
        node = self.graph.node(node_id)
        title = title or None
        if title != node.title:
            self.undo.push(commands.SetNodeField(self, "title", [(node_id, node.title, title)],
                                                 "Rename node"))

    def set_control(self, node_id: str, param: str, mode: str) -> None:
        node = self.graph.node(node_id)
        old = node.control_after_run.get(param)
        if old != mode:
            self.undo.push(commands.SetControl(self, node_id, param, old, mode))

    def toggle_mode(self, node_ids: list[str], mode: str) -> None:
        """Bypass or mute the nodes (or back to normal if all of them already are)."""
        nodes = [self.graph.node(i) for i in node_ids]
        if not nodes:
            return
        target = "normal" if all(n.mode == mode for n in nodes) else mode
        changes = [(n.id, n.mode, target) for n in nodes if n.mode != target]
        word = {"bypassed": "Bypass", "muted": "Mute", "normal": "Un-" + mode.rstrip("ed")}
        self.undo.push(commands.SetMode(self, changes, word.get(target, target)))

    def toggle_collapsed(self, node_ids: list[str]) -> None:
        nodes = [self.graph.node(i) for i in node_ids]
        if not nodes:
            return
        target = not all(graphops.is_collapsed(n) for n in nodes)
        changes = [(n.id, graphops.is_collapsed(n), target) for n in nodes
                   if graphops.is_collapsed(n) != target]
        self.undo.push(commands.SetCollapsed(self, changes, "Collapse" if target else "Expand"))

    def move(self, nodes: dict[str, tuple[tuple, tuple]],
             links: dict[tuple[str, str], tuple[Link, Link]] | None = None,
             groups: tuple[list[Group], list[Group]] | None = None) -> None:
        nodes = {k: v for k, v in nodes.items() if tuple(v[0]) != tuple(v[1])}
        links = {k: v for k, v in (links or {}).items() if v[0] != v[1]}
        if groups is not None and groups[0] == groups[1]:
            groups = None
        if nodes or links or groups:
            self.undo.push(commands.Move(self, nodes, links, groups))

    def add_reroute(self, key: tuple[str, str], at: tuple[float, float]) -> None:
        """Put a reroute point on a wire, in order along it (nearest to ``at``)."""
        link = self.graph.link_into(*key)
        if link is None:
            return
        pts = graphops.reroutes(link)
        # order points by x along the wire: insert before the first point to the right
        idx = len(pts)
        for i, (x, _) in enumerate(pts):
            if at[0] < x:
                idx = i
                break
        pts.insert(idx, (at[0], at[1]))
        self.undo.push(commands.ReplaceLink(self, link, graphops.with_reroutes(link, pts),
                                            "Add reroute"))

    def group(self, node_ids: list[str], title: str = "Group") -> None:
        """Frame the nodes in a new titled group (their items' sizes give the frame)."""
        if not node_ids:
            return
        rects = [self._node_rect(i) for i in node_ids]
        x0 = min(r[0] for r in rects) - 20
        y0 = min(r[1] for r in rects) - 50
        x1 = max(r[0] + r[2] for r in rects) + 20
        y1 = max(r[1] + r[3] for r in rects) + 20
        new = list(self.graph.groups) + [Group(title, (round(x0), round(y0), round(x1 - x0),
                                                       round(y1 - y0)))]
        self.undo.push(commands.SetGroups(self, list(self.graph.groups), new, "Group"))

    node_size_hint = None
    """Set by the canvas: ``f(node_id) -> (w, h)`` of the painted node (for group frames)."""
    placer = None
    """Set by the canvas: ``f(new node) -> (x, y)``, where the node goes (a free spot)."""

    def _node_rect(self, node_id: str) -> tuple[float, float, float, float]:
        node = self.graph.node(node_id)
        w, h = (200.0, 100.0)
        if self.node_size_hint is not None:
            w, h = self.node_size_hint(node_id)
        return (node.pos[0], node.pos[1], w, h)

    def rename_group(self, index: int, title: str) -> None:
        groups = copy.deepcopy(self.graph.groups)
        if 0 <= index < len(groups) and groups[index].title != title:
            groups[index].title = title
            self.undo.push(commands.SetGroups(self, list(self.graph.groups), groups,
                                              "Rename group"))

    def copy_text(self, node_ids: list[str]) -> str:
        return graphops.fragment_text(self.graph, node_ids, self.doc_id)

    def paste(self, text: str, at: tuple[float, float] | None, keep_links: bool = False) -> list[str]:
        """Paste a fragment (clipboard text) with its top-left node at ``at``; returns new ids.
        ``keep_links`` (ComfyUI's Ctrl+Shift+V): the links that came into the copied nodes from
        other nodes of this document come into the pasted ones too, where those nodes still are
        and the link is allowed."""
        frag = graphops.parse_fragment(text)
        if frag is None or not len(frag):
            return []
        b = graphops.bounds(frag.nodes.values())
        if at is None:
            offset = (30.0, 30.0)
        else:
            offset = (at[0] - b[0], at[1] - b[1])
        mapping: dict[str, str] = {}
        nodes, links, groups = graphops.remap_fragment(self.graph, frag, offset, mapping)
        if keep_links and frag.meta.get("source") == self.doc_id:
            links += [lk for lk in graphops.links_in(frag, self.graph, mapping)
                      if self._allowed_into_new(lk, nodes)]
        self.undo.push(commands.AddNodes(self, nodes, links, groups,
                                         text=f"Paste {len(nodes)} node{'s' if len(nodes) != 1 else ''}"))
        return [n.id for n in nodes]

    def _allowed_into_new(self, link: Link, new_nodes: list[Node]) -> bool:
        """Whether ``link`` from an existing node may feed a node being pasted (types fit)."""
        node = next((n for n in new_nodes if n.id == link.dst), None)
        spec = self.registry.get(node.type) if node is not None else None
        out_t = self.output_type(link.src, link.output)
        if spec is None or out_t is None:
            return False
        inp, p = spec.input(link.input), spec.param(link.input)
        want = inp.type if inp is not None else p.socket_type if p is not None else None
        return want is not None and self.registry.compatible(out_t, want)

    def duplicate(self, node_ids: list[str]) -> list[str]:
        if not node_ids:
            return []
        return self.paste(self.copy_text(node_ids), None)

    def apply_seed_controls(self, changes: list[tuple[str, str, Any, Any]]) -> None:
        """Record the "control after run" updates of a run as one undo step."""
        if changes:
            self.undo.push(commands.SetParams(self, changes, "Seeds after run"))


def read_only(path: Path) -> bool:
    """Whether saving over ``path`` must not happen: a shipped example, or a file (or folder) we
    cannot write to."""
    resolved = path.resolve()
    return (resolved.is_relative_to(SHIPPED) or not os.access(resolved, os.W_OK)
            or not os.access(resolved.parent, os.W_OK))


def accepting_inputs(spec: Any, type_name: str, registry: Registry) -> list[str]:
    """Names of a node type's inputs that accept ``type_name``, then of params a link of that
    type may feed (a wire into a param overrides its value)."""
    names = [i.name for i in spec.inputs if registry.compatible(type_name, i.type)]
    if type_name != "*":
        names += [p.name for p in spec.params if registry.compatible(type_name, p.socket_type)]
    return names


def providing_outputs(spec: Any, type_name: str, registry: Registry) -> list[str]:
    """Names of a node type's outputs that may feed an input of ``type_name``."""
    return [o.name for o in spec.outputs if registry.compatible(o.type, type_name)]
