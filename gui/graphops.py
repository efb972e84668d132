"""Small edits the engine's Graph has no method for yet, plus graph fragments for the clipboard.

The editor changes a graph only through Graph methods (so the scene, which listens, follows).
Three edits have no method in ``nodegraph.graph`` today: a node's ``collapsed`` flag (kept in
``node.extra``, which the file format preserves), a node's ``control_after_run`` modes, and the
list of groups. The helpers below make those edits and send the same GraphChange notifications
a Graph method would (see the report: the engine should grow ``set_groups``, ``set_control`` and
an ``extra`` field for ``update_node``; then these become one-line calls).

Reroute points live on a link: ``link.extra["reroutes"] = [[x, y], ...]`` (kept by the format;
the executor ignores them).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from nodegraph import format as graph_format
from nodegraph.graph import Graph, GraphChange, Group, Link, Node, id_sort_key

FRAGMENT_MIME = "application/x-nodegraph-fragment"


def _notify(graph: Graph, change: GraphChange) -> None:
    graph._notify(change)  # noqa: SLF001 - see the module docstring


def is_collapsed(node: Node) -> bool:
    return bool(node.extra.get("collapsed", False))


def set_collapsed(graph: Graph, node_id: str, collapsed: bool) -> None:
    node = graph.node(node_id)
    old = is_collapsed(node)
    if collapsed:
        node.extra["collapsed"] = True
    else:
        node.extra.pop("collapsed", None)
    _notify(graph, GraphChange("node_changed", node_id, "collapsed", old, collapsed))


def set_control(graph: Graph, node_id: str, param: str, mode: str | None) -> None:
    """Set (or, with None, clear) the "control after run" mode of one param."""
    node = graph.node(node_id)
    old = dict(node.control_after_run)
    if mode is None:
        node.control_after_run.pop(param, None)
    else:
        node.control_after_run[param] = mode
    _notify(graph, GraphChange("node_changed", node_id, "control_after_run", old,
                               dict(node.control_after_run)))


def set_groups(graph: Graph, groups: Iterable[Group]) -> None:
    old = graph.groups
    graph.groups = [copy.deepcopy(g) for g in groups]
    _notify(graph, GraphChange("groups_changed", old=old, new=graph.groups))


def reroutes(link: Link) -> list[tuple[float, float]]:
    pts = link.extra.get("reroutes") or []
    out = []
    for p in pts:
        if isinstance(p, (list, tuple)) and len(p) == 2:
            out.append((float(p[0]), float(p[1])))
    return out


def with_reroutes(link: Link, points: list[tuple[float, float]]) -> Link:
    extra = dict(link.extra)
    if points:
        extra["reroutes"] = [[round(x), round(y)] for x, y in points]
    else:
        extra.pop("reroutes", None)
    return Link(link.src, link.output, link.dst, link.input, extra)


# -- fragments (copy / paste) -------------------------------------------------------------------
def fragment(graph: Graph, node_ids: Iterable[str]) -> Graph:
    """The nodes, the links between them and the groups fully around them, as a new Graph."""
    ids = set(node_ids)
    sub = Graph()
    for nid in sorted(ids, key=id_sort_key):
        if nid in graph.nodes:
            sub.add(copy.deepcopy(graph.nodes[nid]))
    for link in graph.iter_links():
        if link.src in ids and link.dst in ids:
            sub.add_link(copy.deepcopy(link))
    for g in graph.groups:
        members = nodes_in_rect(graph, g.rect)
        if members and members <= ids:
            sub.groups.append(copy.deepcopy(g))
    return sub


def fragment_text(graph: Graph, node_ids: Iterable[str]) -> str:
    """A graph file (format nodegraph) holding just the fragment: what goes on the clipboard."""
    sub = fragment(graph, node_ids)
    sub.meta = {"fragment": True}
    return graph_format.dumps(sub)


def parse_fragment(text: str) -> Graph | None:
    """The graph in clipboard text, or None if the text is not a NodeGraph graph."""
    try:
        return graph_format.loads(text)
    except Exception:
        return None


def remap_fragment(target: Graph, frag: Graph, offset: tuple[float, float]
                   ) -> tuple[list[Node], list[Link], list[Group]]:
    """Fresh ids (unused in ``target``) and shifted positions for pasting ``frag`` into ``target``."""
    dx, dy = offset
    used = set(target.nodes)
    next_num = max([int(i) for i in used if i.isdigit()] + [0]) + 1
    mapping: dict[str, str] = {}
    nodes: list[Node] = []
    for node in sorted(frag.nodes.values(), key=lambda n: id_sort_key(n.id)):
        while str(next_num) in used:
            next_num += 1
        new_id = str(next_num)
        used.add(new_id)
        mapping[node.id] = new_id
        n = copy.deepcopy(node)
        n.id = new_id
        n.pos = (round(node.pos[0] + dx), round(node.pos[1] + dy))
        nodes.append(n)
    links = []
    for link in frag.iter_links():
        if link.src in mapping and link.dst in mapping:
            extra = dict(link.extra)
            if "reroutes" in extra:
                extra["reroutes"] = [[round(p[0] + dx), round(p[1] + dy)] for p in extra["reroutes"]]
            links.append(Link(mapping[link.src], link.output, mapping[link.dst], link.input, extra))
    groups = []
    for g in frag.groups:
        x, y, w, h = g.rect
        groups.append(Group(g.title, (round(x + dx), round(y + dy), w, h), g.color, dict(g.extra)))
    return nodes, links, groups


def bounds(nodes: Iterable[Node]) -> tuple[float, float, float, float] | None:
    """(min x, min y, max x, max y) of node positions, or None when there are none."""
    xs, ys = [], []
    for n in nodes:
        xs.append(n.pos[0])
        ys.append(n.pos[1])
    if not xs:
        return None
    return min(xs), min(ys), max(xs), max(ys)


def nodes_in_rect(graph: Graph, rect: tuple[float, float, float, float]) -> set[str]:
    """Ids of the nodes whose top-left corner lies inside ``rect`` (a group's members)."""
    return {n.id for n in graph.nodes.values() if _rect_contains(rect, n.pos)}


def _rect_contains(rect: tuple[float, float, float, float], pos: tuple[float, float]) -> bool:
    x, y, w, h = rect
    return x <= pos[0] <= x + w and y <= pos[1] <= y + h



def effective_params(node: Node, spec: Any) -> dict[str, Any]:
    """A node's params with defaults filled in for the ones the file leaves out."""
    values = {p.name: p.default for p in spec.params} if spec is not None else {}
    values.update(node.params)
    return values
