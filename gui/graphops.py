"""Graph fragments for the clipboard, reroute points, group membership, and the editor's flags.

The editor changes a graph only through Graph methods (so the scene, which listens, follows).
A node's ``collapsed`` flag is an editor field kept in ``node.extra`` (which the file format
preserves), set with ``Graph.set_extra``.

Reroute points live on a link: ``link.extra["reroutes"] = [[x, y], ...]`` (kept by the format;
the executor ignores them).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from nodegraph import format as graph_format
from nodegraph.graph import Graph, Group, Link, Node, id_sort_key

FRAGMENT_MIME = "application/x-nodegraph-fragment"
COLLAPSED = "collapsed"
"""The ``node.extra`` key of a node drawn as its title bar only."""


def is_collapsed(node: Node) -> bool:
    return bool(node.extra.get(COLLAPSED, False))


def set_collapsed(graph: Graph, node_id: str, collapsed: bool) -> None:
    graph.set_extra(node_id, COLLAPSED, True if collapsed else None)


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


def fragment_text(graph: Graph, node_ids: Iterable[str], source: str | None = None) -> str:
    """A graph file (format nodegraph) holding just the fragment: what goes on the clipboard.

    Its ``meta`` also keeps the links coming into the fragment from other nodes (``links_in``:
    ``[src, output, dst, input]``) and the document it came from (``source``), for a paste that
    keeps them (Ctrl+Shift+V)."""
    ids = set(node_ids)
    sub = fragment(graph, ids)
    links_in = [[lk.src, lk.output, lk.dst, lk.input] for lk in graph.iter_links()
                if lk.dst in ids and lk.src not in ids]
    sub.meta = {"fragment": True, "source": source, "links_in": links_in}
    return graph_format.dumps(sub)


def links_in(frag: Graph, target: Graph, mapping: dict[str, str]) -> list[Link]:
    """The fragment's incoming links (see :func:`fragment_text`) re-made for its pasted copy: each
    from the same source node, if ``target`` still has it, into the copy (``mapping``: old → new id)."""
    out = []
    for entry in frag.meta.get("links_in") or []:
        if not (isinstance(entry, list) and len(entry) == 4 and all(isinstance(v, str) for v in entry)):
            continue
        src, output, dst, input_name = entry
        if src in target.nodes and dst in mapping:
            out.append(Link(src, output, mapping[dst], input_name))
    return out


def parse_fragment(text: str) -> Graph | None:
    """The graph in clipboard text, or None if the text is not a NodeGraph graph."""
    try:
        return graph_format.loads(text)
    except Exception:
        return None


def remap_fragment(target: Graph, frag: Graph, offset: tuple[float, float],
                   mapping: dict[str, str] | None = None) -> tuple[list[Node], list[Link], list[Group]]:
    """Fresh ids (unused in ``target``) and shifted positions for pasting ``frag`` into ``target``
    (``mapping``, if given, is filled with old id → new id)."""
    dx, dy = offset
    used = set(target.nodes)
    next_num = max([int(i) for i in used if i.isdigit()] + [0]) + 1
    mapping = {} if mapping is None else mapping
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
