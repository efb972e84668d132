"""Check a graph against a registry and collect every problem (never stop at the first).

Problem codes are listed in docs/graph-format.md. Loading problems (not JSON, wrong format or
version, malformed fields, duplicate ids) come from :mod:`nodegraph.format`;
:func:`validate_file` returns both kinds.
"""
from __future__ import annotations

import os
from typing import Any

from .comfy.common import placeholder_message, placeholder_problems
from .context import RunOptions
from .errors import GraphLoadError, Problem
from .format import load
from .graph import Graph, Link, Node, id_sort_key
from .registry import COMBO, NodeSpec, Registry


def validate(graph: Graph, registry: Registry, options: RunOptions | None = None) -> list[Problem]:
    """Every problem of ``graph``: unknown types, missing or mistyped links, bad params, cycles,
    no output node. Errors stop a run; warnings do not."""
    problems: list[Problem] = []
    add = problems.append
    nodes = graph.nodes
    get_spec = registry.nodes.get
    choices_memo: dict[int, Any] = {}
    outputs = 0

    for node in nodes.values():
        if node.mode == "muted":
            continue
        spec = get_spec(node.type)
        if spec is None:
            add(Problem("unknown_type", placeholder_message(node) or
                        registry.unknown_type_message(node.type) +
                        "; install the pack that provides it, or delete the node",
                        node.id, node.type, "type"))
            continue
        if spec.output_node and node.mode == "normal":
            outputs += 1
        links = graph.inputs_of(node.id)
        if node.mode == "normal":
            _check_params(node, spec, links, options, choices_memo, add)
        _check_inputs(graph, registry, node, spec, links, add)

    if nodes and outputs == 0:
        add(Problem("no_output_node", "the graph has no output node (such as SaveImage), so a "
                    "run would compute nothing; add one, or un-mute one"))
    elif not nodes:
        add(Problem("no_output_node", "the graph is empty; add nodes and an output node"))
    problems.extend(_cycles(graph))
    problems.extend(placeholder_problems(graph))
    return problems


def _check_params(node: Node, spec: NodeSpec, links: Any, options: RunOptions | None,
                  choices_memo: dict[int, Any], add: Any) -> None:
    params = node.params
    for p in spec.params:
        if p.name in links:
            continue  # fed by a link: the value comes from upstream
        if p.name not in params:
            continue  # the default applies
        choices = None
        if p.kind == COMBO:
            choices = choices_memo.get(id(p))
            if choices is None:
                try:
                    choices = p.resolve_choices(options)
                except Exception as exc:
                    add(Problem("choices_failed", f"could not list the choices: "
                                f"{type(exc).__name__}: {exc}", node.id, node.type,
                                f"param {p.name}"))
                    choices = ()
                    choices_memo[id(p)] = choices
                    continue
                choices_memo[id(p)] = choices
        try:
            bad = p.check(params[p.name], options, choices)
        except Exception as exc:  # a pack's check_unlisted failing must not stop validation
            bad = ("choices_failed", f"could not check the value: {type(exc).__name__}: {exc}")
        if bad is not None:
            add(Problem(bad[0], bad[1], node.id, node.type, f"param {p.name}"))
    known = spec.param_names
    for name in params:
        if name not in known:
            add(Problem("unknown_param", f"{spec.type_id} has no param {name!r}; it is ignored "
                            "(delete it from the file to silence this)", node.id, node.type,
                            f"param {name}", "warning"))


def _check_inputs(graph: Graph, registry: Registry, node: Node, spec: NodeSpec,
                  links: Any, add: Any) -> None:
    for inp in spec.inputs:
        link = links.get(inp.name)
        if link is None:
            if not inp.optional and node.mode == "normal":
                add(Problem("missing_input", f"required input is not connected; connect an output "
                            f"of type {inp.type}", node.id, node.type, f"input {inp.name}"))
            continue
        _check_link(graph, registry, node, link, inp.type, inp.optional, f"input {inp.name}", add)
    if len(links) > len(spec.inputs):
        for name, link in links.items():
            if spec.input(name) is not None:
                continue
            p = spec.param(name)
            if p is None:
                add(Problem("unknown_input", f"a link from node {link.src} goes to {name!r}, which "
                            f"{spec.type_id} does not have; remove the link", node.id, node.type,
                            f"input {name}"))
            else:
                _check_link(graph, registry, node, link, p.socket_type, True, f"param {name}", add)


def _check_link(graph: Graph, registry: Registry, node: Node, link: Link, want: str,
                optional: bool, field: str, add: Any) -> None:
    src = graph.nodes.get(link.src)
    if src is None:
        add(Problem("missing_node", f"linked from node {link.src!r}, which does not exist; "
                    "reconnect the input", node.id, node.type, field))
        return
    if src.mode == "muted":
        if not optional and node.mode == "normal":
            add(Problem("muted_source", f"comes from node {src.label}, which is muted; un-mute it "
                        "or connect another node", node.id, node.type, field))
        return
    src_spec = registry.nodes.get(src.type)
    if src_spec is None:
        return  # reported on the source node
    out = src_spec.output(link.output)
    if out is None:
        names = ", ".join(o.name for o in src_spec.outputs) or "none"
        add(Problem("missing_output", f"linked from output {link.output!r} of node {src.label}, "
                    f"which has no such output (it has: {names}); reconnect the input",
                    node.id, node.type, field))
        return
    if not registry.compatible(out.type, want):
        add(Problem("type_mismatch", f"output {out.name!r} of node {src.label} gives {out.type} "
                    f"but this takes {want}; connect a {want} output instead",
                    node.id, node.type, field))
        return
    if src.mode == "bypassed" and not optional and node.mode == "normal":
        passed = graph.inputs_of(src.id)
        if not any(i.type == out.type and i.name in passed for i in src_spec.inputs):
            add(Problem("bypassed_source", f"comes from node {src.label}, which is bypassed and "
                        f"has no connected {out.type} input to pass through; un-bypass it",
                        node.id, node.type, field))


def _cycles(graph: Graph) -> list[Problem]:
    """Kahn's algorithm over existing nodes; if nodes remain, report each strongly connected
    component (the cycles) with its members."""
    nodes = graph.nodes
    indeg = dict.fromkeys(nodes, 0)
    succ: dict[str, list[str]] = {}
    for link in graph.iter_links():
        if link.src in indeg and link.dst in indeg:
            indeg[link.dst] += 1
            succ.setdefault(link.src, []).append(link.dst)
    ready = [n for n, d in indeg.items() if d == 0]
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        for m in succ.get(n, ()):
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if seen == len(indeg):
        return []
    import networkx as nx

    g = nx.DiGraph()
    g.add_edges_from((a, b) for a, bs in succ.items() for b in bs)
    problems = []
    for comp in nx.strongly_connected_components(g):
        if len(comp) == 1:
            (only,) = comp
            if not g.has_edge(only, only):
                continue
        members = sorted(comp, key=id_sort_key)
        first = nodes[members[0]]
        listed = ", ".join(members)
        problems.append(Problem("cycle", f"nodes {listed} form a cycle, so none of them can run "
                                "first; remove one of the links between them", first.id,
                                first.type, None))
    return problems



def validate_file(path: str | os.PathLike[str], registry: Registry,
                  options: RunOptions | None = None) -> tuple[Graph | None, list[Problem]]:
    """Load and validate a file: ``(graph, problems)``; graph is None if it could not be loaded."""
    try:
        graph = load(path)
    except GraphLoadError as exc:
        return None, exc.problems
    return graph, validate(graph, registry, options)


def errors(problems: list[Problem]) -> list[Problem]:
    """Only the problems that stop a run."""
    return [p for p in problems if p.severity == "error"]
