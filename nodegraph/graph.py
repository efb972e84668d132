"""The graph as plain data: nodes with stable string ids and params by name, typed links, groups.

Nothing here knows about node types; :mod:`nodegraph.validate` checks a graph against a registry
and :mod:`nodegraph.format` reads and writes it. Edit a graph through its methods (they keep the
link indexes right and notify listeners with a :class:`GraphChange` of a :class:`ChangeKind`,
which is what the editor's scene follows).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, NamedTuple, Union

from .errors import UsageError
from .registry import CONTROL_MODES

NODE_MODES = ("normal", "muted", "bypassed")
# Numeric ids longer than this do not move the counter of fresh ids (they stay valid ids: a 5000-digit
# id is text like any other, and Python refuses to turn such a string into an int).
MAX_COUNTED_ID_DIGITS = 18


def id_sort_key(node_id: str) -> tuple[int, int, str, str]:
    """Sort key putting numeric ids first, in numeric order ("2" < "10"), then the others by text.

    Numbers are compared by length and digits, never converted, so ids of any length sort."""
    if node_id.isascii() and node_id.isdigit():
        digits = node_id.lstrip("0") or "0"
        return (0, len(digits), digits, node_id)
    return (1, 0, "", node_id)
"""``muted``: the node is left out of runs. ``bypassed``: each output passes through the first
connected input of the same type (the node's function does not run)."""


@dataclass
class Node:
    """One node: its type id, params by name, and what the editor needs to draw it.

    ``control_after_run`` maps a seed-like param to fixed/increment/decrement/randomize (missing:
    the param's default mode). ``extra`` holds fields this version does not know, kept on save.
    """

    id: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    pos: tuple[float, float] = (0, 0)
    size: tuple[float, float] | None = None
    title: str | None = None
    color: str | None = None
    mode: str = "normal"
    control_after_run: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How messages name this node: ``12 (KSampler)``."""
        return f"{self.id} ({self.type})"


@dataclass(frozen=True)
class Link:
    """``(src node, output name) → (dst node, input name)``; an input has at most one link."""

    src: str
    output: str
    dst: str
    input: str
    extra: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass
class Group:
    """A titled frame in the editor: ``rect`` is (x, y, width, height)."""

    title: str
    rect: tuple[float, float, float, float]
    color: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ChangeKind(str, Enum):
    """What a :class:`GraphChange` is about, and which of its fields say more. A ``str`` (equal
    to its value), so ``kind == "param_changed"`` also holds."""

    NODE_ADDED = "node_added"
    """``node_id``."""
    NODE_REMOVED = "node_removed"
    """``node_id`` (its links were removed first, each with its own change)."""
    LINK_ADDED = "link_added"
    """``link``; ``node_id`` and ``name`` are its destination node and input."""
    LINK_REMOVED = "link_removed"
    """As LINK_ADDED."""
    PARAM_CHANGED = "param_changed"
    """``node_id``, ``name`` (the param), ``old`` (None if it was not set) and ``new``."""
    MODE_CHANGED = "mode_changed"
    """``node_id``, ``old`` and ``new`` mode (``name`` is "mode")."""
    NODE_CHANGED = "node_changed"
    """An editor field of a node: ``name`` is pos, size, title or color; ``old``, ``new``."""
    CONTROL_CHANGED = "control_changed"
    """``node_id``, ``name`` (the param), ``old`` and ``new`` "control after run" mode (None:
    not set, the param's default applies)."""
    EXTRA_CHANGED = "extra_changed"
    """``node_id``, ``name`` (the key in ``node.extra``), ``old`` and ``new`` (None: absent)."""
    GROUPS_CHANGED = "groups_changed"
    """``old`` and ``new`` list of groups."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class GraphChange:
    """What changed, delivered to listeners; ``kind`` says which fields are set."""

    kind: ChangeKind
    node_id: str | None = None
    name: str | None = None
    old: Any = None
    new: Any = None
    link: Link | None = None


NodeRef = Union[str, Node]
Listener = Callable[[GraphChange], None]


class Upstream(NamedTuple):
    """What :meth:`Graph.upstream` found: the nodes, and the links it followed in the order it
    followed them."""

    nodes: set[str]
    links: list[Link]


def _ref(ref: NodeRef) -> str:
    return ref.id if isinstance(ref, Node) else ref


def _put(fields: dict[str, Any], key: str, value: Any) -> Any:
    """Set ``fields[key]``, or remove it for None; returns what it was (None: absent)."""
    old = fields.get(key)
    if value is None:
        fields.pop(key, None)
    else:
        fields[key] = value
    return old


def _acyclic(nodes: set[str], edges: list[tuple[str, str]]) -> bool:
    """Kahn's algorithm: whether every node can be ordered (the common case, without networkx)."""
    indegree = dict.fromkeys(nodes, 0)
    successors: dict[str, list[str]] = {}
    for src, dst in edges:
        indegree[dst] += 1
        successors.setdefault(src, []).append(dst)
    ready = [n for n, d in indegree.items() if d == 0]
    ordered = 0
    while ready:
        n = ready.pop()
        ordered += 1
        for m in successors.get(n, ()):
            indegree[m] -= 1
            if indegree[m] == 0:
                ready.append(m)
    return ordered == len(indegree)


class Graph:
    """Nodes (by id), links (by destination input), groups and free-form ``meta``.

    ``revision`` counts structural changes (nodes or links added/removed, modes changed) made
    through the methods; the executor uses it to reuse its execution plan.
    """

    def __init__(self, *, meta: dict[str, Any] | None = None, extra: dict[str, Any] | None = None):
        self._nodes: dict[str, Node] = {}
        self._links: dict[tuple[str, str], Link] = {}
        self._in: dict[str, dict[str, Link]] = {}
        self._out: dict[str, dict[tuple[str, str], Link]] = {}
        self._next_id = 1
        self._listeners: list[Listener] = []
        self.groups: list[Group] = []
        self.meta: dict[str, Any] = meta if meta is not None else {}
        self.extra: dict[str, Any] = extra if extra is not None else {}
        self.revision = 0
        self.nodes: Mapping[str, Node] = MappingProxyType(self._nodes)
        """Read-only view of the nodes by id (edit with add_node/remove_node)."""

    # -- reading ---------------------------------------------------------------------------
    @property
    def links(self) -> list[Link]:
        """All links, sorted by destination (a new list each time)."""
        return [self._links[k] for k in sorted(self._links)]

    def iter_links(self) -> Iterator[Link]:
        return iter(self._links.values())

    def node(self, ref: NodeRef) -> Node:
        """The node with this id (or the node itself); UsageError if there is none."""
        node_id = _ref(ref)
        node = self._nodes.get(node_id)
        if node is None:
            raise UsageError(f"there is no node {node_id!r} in the graph")
        return node

    def find(self, ref: str) -> Node:
        """A node by id, else by title if exactly one node has that title."""
        node = self._nodes.get(ref)
        if node is not None:
            return node
        titled = [n for n in self._nodes.values() if n.title == ref]
        if len(titled) == 1:
            return titled[0]
        if titled:
            ids = ", ".join(n.id for n in titled)
            raise UsageError(f"{len(titled)} nodes are titled {ref!r} (ids {ids}); name the node by id")
        raise UsageError(f"no node has the id or title {ref!r}")

    def inputs_of(self, ref: NodeRef) -> Mapping[str, Link]:
        """Links into a node, by input name."""
        return self._in.get(_ref(ref), {})

    def link_into(self, ref: NodeRef, input_name: str) -> Link | None:
        return self._in.get(_ref(ref), {}).get(input_name)

    def links_from(self, ref: NodeRef) -> list[Link]:
        """Links out of a node."""
        return list(self._out.get(_ref(ref), {}).values())

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, (str, Node)) and _ref(ref) in self._nodes

    # -- reachability ----------------------------------------------------------------------
    def upstream(self, refs: Iterable[NodeRef], *,
                 through: Callable[[Node], bool] | None = None) -> Upstream:
        """The given nodes and every node they depend on through links, and the links followed.

        Links from nodes that do not exist are not followed, nor links from a node that
        ``through`` rejects (e.g. a muted node, for what a run needs). Whether linking ``a`` into
        ``b`` would close a cycle: ``b in graph.upstream([a]).nodes``.
        """
        nodes, ins = self._nodes, self._in
        found: set[str] = set()
        followed: list[Link] = []
        stack = [nid for nid in map(_ref, refs) if nid in nodes]
        while stack:
            nid = stack.pop()
            if nid in found:
                continue
            found.add(nid)
            for link in ins.get(nid, {}).values():
                src = nodes.get(link.src)
                if src is not None and (through is None or through(src)):
                    followed.append(link)
                    if link.src not in found:
                        stack.append(link.src)
        return Upstream(found, followed)

    def cycles(self, node_ids: Iterable[str] | None = None) -> list[list[str]]:
        """The cycles among ``node_ids`` (default: all nodes), through the links between them: each
        is the ids of nodes that all depend on each other (sorted, cycles by their first id)."""
        among = set(self._nodes) if node_ids is None else set(node_ids)
        edges = [(lk.src, lk.dst) for lk in self._links.values() if lk.src in among and lk.dst in among]
        if _acyclic(among, edges):
            return []
        import networkx as nx

        dag = nx.DiGraph(edges)
        found = [sorted(c, key=id_sort_key) for c in nx.strongly_connected_components(dag)
                 if len(c) > 1 or dag.has_edge(next(iter(c)), next(iter(c)))]
        return sorted(found, key=lambda c: id_sort_key(c[0]))

    def __len__(self) -> int:
        return len(self._nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (self._nodes == other._nodes and self._links == other._links
                and self.groups == other.groups and self.meta == other.meta
                and self.extra == other.extra)

    def __repr__(self) -> str:
        return f"<Graph {len(self._nodes)} nodes, {len(self._links)} links>"

    # -- listeners -------------------------------------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(GraphChange)`` after every change made through this graph's methods."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        self._listeners.remove(fn)

    def _notify(self, change: GraphChange) -> None:
        for fn in list(self._listeners):
            fn(change)

    # -- editing ---------------------------------------------------------------------------
    def new_id(self) -> str:
        """A fresh id: one more than the largest numeric id ever used in this graph."""
        while str(self._next_id) in self._nodes:
            self._next_id += 1
        return str(self._next_id)

    def add_node(self, type_id: str, params: dict[str, Any] | None = None, *, id: str | None = None,
                 title: str | None = None, pos: tuple[float, float] = (0, 0),
                 size: tuple[float, float] | None = None, color: str | None = None,
                 mode: str = "normal") -> Node:
        """Add a node of ``type_id`` and return it (its id is fresh unless you give one)."""
        node = Node(id if id is not None else self.new_id(), type_id, dict(params or {}),
                    tuple(pos), tuple(size) if size is not None else None, title, color, mode)
        return self.add(node)

    def add(self, node: Node) -> Node:
        """Insert an existing Node object (used by loading, paste and undo)."""
        if not isinstance(node.id, str) or not node.id:
            raise UsageError(f"node ids are non-empty strings, got {node.id!r}")
        if node.id in self._nodes:
            raise UsageError(f"node id {node.id!r} is already used")
        if node.mode not in NODE_MODES:
            raise UsageError(f"node {node.id}: mode {node.mode!r} is not one of {', '.join(NODE_MODES)}")
        self._nodes[node.id] = node
        if node.id.isascii() and node.id.isdigit() and len(node.id) <= MAX_COUNTED_ID_DIGITS:
            self._next_id = max(self._next_id, int(node.id) + 1)
        self.revision += 1
        self._notify(GraphChange(ChangeKind.NODE_ADDED, node.id))
        return node

    def remove_node(self, ref: NodeRef) -> Node:
        """Remove a node and every link touching it; returns the node."""
        node = self.node(ref)
        for link in list(self._in.get(node.id, {}).values()) + list(self._out.get(node.id, {}).values()):
            self._remove_link(link)
        del self._nodes[node.id]
        self.revision += 1
        self._notify(GraphChange(ChangeKind.NODE_REMOVED, node.id))
        return node

    def connect(self, src: NodeRef, output: str, dst: NodeRef, input_name: str,
                extra: dict[str, Any] | None = None) -> Link:
        """Link ``src.output`` to ``dst.input_name``, replacing any link already into that input.
        Both nodes must exist (whether the sockets exist is for validation to say)."""
        src_id, dst_id = self.node(src).id, self.node(dst).id
        return self._add_link(Link(src_id, output, dst_id, input_name, dict(extra or {})))

    def disconnect(self, dst: NodeRef, input_name: str) -> Link | None:
        """Remove the link into ``dst.input_name``; returns it (None if there was none)."""
        link = self._in.get(_ref(dst), {}).get(input_name)
        if link is not None:
            self._remove_link(link)
        return link

    def add_link(self, link: Link) -> Link:
        """Insert a Link as is, even if its nodes are missing (loading keeps such links so
        validation can report them)."""
        return self._add_link(link)

    def _add_link(self, link: Link) -> Link:
        old = self._links.get((link.dst, link.input))
        if old is not None:
            self._remove_link(old)
        self._links[(link.dst, link.input)] = link
        self._in.setdefault(link.dst, {})[link.input] = link
        self._out.setdefault(link.src, {})[(link.dst, link.input)] = link
        self.revision += 1
        self._notify(GraphChange(ChangeKind.LINK_ADDED, link.dst, link.input, link=link))
        return link

    def _remove_link(self, link: Link) -> None:
        del self._links[(link.dst, link.input)]
        ins = self._in[link.dst]
        del ins[link.input]
        if not ins:
            del self._in[link.dst]
        outs = self._out[link.src]
        del outs[(link.dst, link.input)]
        if not outs:
            del self._out[link.src]
        self.revision += 1
        self._notify(GraphChange(ChangeKind.LINK_REMOVED, link.dst, link.input, link=link))

    def set_param(self, ref: NodeRef, name: str, value: Any) -> None:
        node = self.node(ref)
        old = node.params.get(name)
        node.params[name] = value
        self._notify(GraphChange(ChangeKind.PARAM_CHANGED, node.id, name, old, value))

    def set_mode(self, ref: NodeRef, mode: str) -> None:
        if mode not in NODE_MODES:
            raise UsageError(f"mode {mode!r} is not one of {', '.join(NODE_MODES)}")
        node = self.node(ref)
        old, node.mode = node.mode, mode
        self.revision += 1
        self._notify(GraphChange(ChangeKind.MODE_CHANGED, node.id, "mode", old, mode))

    def update_node(self, ref: NodeRef, **fields: Any) -> None:
        """Set editor fields (pos, size, title, color) of a node and notify listeners."""
        node = self.node(ref)
        for name, value in fields.items():
            if name not in ("pos", "size", "title", "color"):
                raise UsageError(f"update_node sets pos, size, title or color, not {name!r}")
            old = getattr(node, name)
            if name in ("pos", "size") and value is not None:
                value = tuple(value)
            setattr(node, name, value)
            self._notify(GraphChange(ChangeKind.NODE_CHANGED, node.id, name, old, value))

    def set_control(self, ref: NodeRef, param: str, mode: str | None) -> None:
        """Set the "control after run" mode of a param (None: back to the param's default)."""
        if mode is not None and mode not in CONTROL_MODES:
            raise UsageError(f"control mode {mode!r} is not one of {', '.join(CONTROL_MODES)}")
        node = self.node(ref)
        old = _put(node.control_after_run, param, mode)
        self._notify(GraphChange(ChangeKind.CONTROL_CHANGED, node.id, param, old, mode))

    def set_extra(self, ref: NodeRef, key: str, value: Any) -> None:
        """Set a field of ``node.extra`` (kept in the file; e.g. the editor's ``collapsed``);
        None removes it."""
        node = self.node(ref)
        old = _put(node.extra, key, value)
        self._notify(GraphChange(ChangeKind.EXTRA_CHANGED, node.id, key, old, value))

    def set_groups(self, groups: Iterable[Group]) -> None:
        """Replace the list of groups (copies of ``groups``: later edits of them do not leak in)."""
        old = self.groups
        self.groups = [copy.deepcopy(g) for g in groups]
        self._notify(GraphChange(ChangeKind.GROUPS_CHANGED, old=old, new=self.groups))

    def copy(self) -> Graph:
        """A deep copy (listeners are not copied)."""
        g = Graph(meta=copy.deepcopy(self.meta), extra=copy.deepcopy(self.extra))
        for node in self._nodes.values():
            g.add(copy.deepcopy(node))
        for link in self._links.values():
            g.add_link(copy.deepcopy(link))
        g.groups = copy.deepcopy(self.groups)
        return g
