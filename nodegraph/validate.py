"""Check a graph against a registry: every problem (never stop at the first), or the plan of a run.

- :func:`validate` lists every problem of a graph: unknown types, missing or mistyped links, bad
  params, cycles, no output node. Errors stop a run; warnings do not. A run takes only what its
  outputs need, so the problems of nodes no output depends on are warnings (code unchanged, the
  message says the node does not run).
- :func:`build_plan` checks what a run's targets need — the nodes they depend on, their order, cycles,
  missing nodes, inputs and outputs, with the same checks and messages — and returns the plan the
  executor runs (:mod:`nodegraph.plan`).

Problem codes are listed in docs/graph-format.md. Loading problems (not JSON, wrong format or
version, malformed fields, duplicate ids) come from :mod:`nodegraph.format`;
:func:`validate_file` returns both kinds.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from .comfy.common import placeholder_message, placeholder_problems
from .context import RunOptions
from .errors import GraphLoadError, GraphValidationError, Problem
from .format import load
from .graph import Graph, Link, Node, id_sort_key
from .plan import Plan, Source, Step, output_targets, target_ids
from .registry import COMBO, NodeSpec, Registry

Add = Callable[[Problem], None]
Resolved = list[tuple[str, str, int]]
"""Links that can feed a node: (input or param name, source node id, source output index)."""


def validate(graph: Graph, registry: Registry, options: RunOptions | None = None,
             targets: Iterable[str | Node] | None = None) -> list[Problem]:
    """Every problem of ``graph``: unknown types, missing or mistyped links, bad params, cycles,
    no output node. Errors stop a run; warnings do not.

    A run computes ``targets`` (default: the output nodes) and what they need, nothing else; the
    problems of the other nodes are warnings (see :func:`only_needed`)."""
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
            add(_unknown_type(registry, node))
            continue
        if spec.output_node and node.mode == "normal":
            outputs += 1
        links = graph.inputs_of(node.id)
        if node.mode == "normal":
            _check_params(node, spec, links, options, choices_memo, add)
        _check_inputs(graph, registry, node, spec, links, add)

    if outputs == 0 and targets is None:
        add(_no_output(graph))
    problems.extend(_cycle_problems(graph, graph.cycles()))
    problems.extend(placeholder_problems(graph))
    return only_needed(graph, registry, problems, targets)


NOT_NEEDED = "no output needs this node, so it does not run"
"""What a problem's message ends with when validation made it a warning (:func:`only_needed`)."""


def only_needed(graph: Graph, registry: Registry, problems: list[Problem],
                targets: Iterable[str | Node] | None = None) -> list[Problem]:
    """``problems`` with the errors of nodes that no target needs made warnings.

    The targets (default: the output nodes) and the nodes they depend on through un-muted links run;
    no other node does, so its problems cannot stop a run (ComfyUI runs what its outputs need too).
    With no target at all (the ``no_output_node`` error) every problem stays as it is."""
    wanted = output_targets(graph, registry) if targets is None else target_ids(targets)
    if not wanted:
        return problems
    needed = graph.upstream(wanted, through=lambda src: src.mode != "muted").nodes
    return [replace(p, severity="warning", message=f"{p.message} ({NOT_NEEDED})")
            if p.severity == "error" and p.node_id is not None and p.node_id not in needed else p
            for p in problems]


def build_plan(graph: Graph, registry: Registry, targets: Iterable[str | Node] | None = None) -> Plan:
    """The plan of a run computing ``targets`` (default: the output nodes): the nodes they depend on
    through un-muted links, each after its sources. Raises GraphValidationError listing what stops
    them from running: no target, a cycle, unknown types, links from missing nodes or outputs or into
    unknown inputs, mistyped links, required inputs left unconnected (params are not checked here)."""
    wanted = output_targets(graph, registry) if targets is None else target_ids(targets)
    if not wanted:
        raise GraphValidationError([_no_output(graph)])
    problems = [Problem("missing_node", f"there is no node {t!r} to compute", t)
                for t in wanted if t not in graph.nodes]
    steps = []
    for node_id in _run_order(graph, wanted):
        step = _plan_step(graph, registry, graph.nodes[node_id], problems.append)
        if step is not None:
            steps.append(step)
    if problems:
        raise GraphValidationError(problems)
    return Plan(graph.revision, wanted, steps)


def _run_order(graph: Graph, targets: tuple[str, ...]) -> list[str]:
    """What ``targets`` need (through un-muted links), sources first (ties by id)."""
    import networkx as nx

    needed = graph.upstream(targets, through=lambda src: src.mode != "muted")
    dag = nx.DiGraph()
    dag.add_nodes_from(sorted(needed.nodes, key=id_sort_key))
    dag.add_edges_from((link.src, link.dst) for link in needed.links)
    try:
        return list(nx.topological_sort(dag))
    except nx.NetworkXUnfeasible:
        raise GraphValidationError(_cycle_problems(graph, graph.cycles(needed.nodes))) from None


def _plan_step(graph: Graph, registry: Registry, node: Node, add: Add) -> Step | None:
    spec = registry.nodes.get(node.type)
    if spec is None:
        add(_unknown_type(registry, node))
        return None
    inputs = sorted(_check_inputs(graph, registry, node, spec, graph.inputs_of(node.id), add))
    passthrough = _passthrough(spec, inputs) if node.mode == "bypassed" else []
    return Step(node, spec, inputs, passthrough)


def _passthrough(spec: NodeSpec, inputs: Resolved) -> list[Source | None]:
    """Per output of a bypassed node, the source of its first connected input of the same type."""
    by_name = {name: (src, index) for name, src, index in inputs}
    return [next((by_name[i.name] for i in spec.inputs if i.type == out.type and i.name in by_name),
                 None) for out in spec.outputs]


def _unknown_type(registry: Registry, node: Node) -> Problem:
    return Problem("unknown_type", placeholder_message(node) or registry.unknown_type_message(node.type)
                   + "; install the pack that provides it, or delete the node", node.id, node.type, "type")


def _no_output(graph: Graph) -> Problem:
    if not graph.nodes:
        return Problem("no_output_node", "the graph is empty; add nodes and an output node")
    return Problem("no_output_node", "the graph has no output node (such as SaveImage), so a run "
                   "would compute nothing; add one, or un-mute one")


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
                  links: Mapping[str, Link], add: Add) -> Resolved:
    """Check the links into ``node``; returns those that can feed it."""
    resolved: Resolved = []
    for inp in spec.inputs:
        link = links.get(inp.name)
        if link is None:
            if not inp.optional and node.mode == "normal":
                add(Problem("missing_input", f"required input is not connected; connect an output "
                            f"of type {inp.type}", node.id, node.type, f"input {inp.name}"))
            continue
        index = _check_link(graph, registry, node, link, inp.type, inp.optional, f"input {inp.name}", add)
        if index is not None:
            resolved.append((inp.name, link.src, index))
    for name, link in links.items():
        if spec.input(name) is not None:
            continue
        p = spec.param(name)
        if p is None:
            add(Problem("unknown_input", f"a link from node {link.src} goes to {name!r}, which "
                        f"{spec.type_id} does not have; remove the link", node.id, node.type,
                        f"input {name}"))
            continue
        index = _check_link(graph, registry, node, link, p.socket_type, True, f"param {name}", add)
        if index is not None:
            resolved.append((name, link.src, index))
    return resolved


def _check_link(graph: Graph, registry: Registry, node: Node, link: Link, want: str,
                optional: bool, field: str, add: Add) -> int | None:
    """Check one link; returns the index of the source output if the link can feed the node."""
    src = graph.nodes.get(link.src)
    if src is None:
        add(Problem("missing_node", f"linked from node {link.src!r}, which does not exist; "
                    "reconnect the input", node.id, node.type, field))
        return None
    if src.mode == "muted":
        if not optional and node.mode == "normal":
            add(Problem("muted_source", f"comes from node {src.label}, which is muted; un-mute it "
                        "or connect another node", node.id, node.type, field))
        return None
    src_spec = registry.nodes.get(src.type)
    if src_spec is None:
        return None  # reported on the source node
    index = src_spec.output_index(link.output)
    if index < 0:
        names = ", ".join(o.name for o in src_spec.outputs) or "none"
        add(Problem("missing_output", f"linked from output {link.output!r} of node {src.label}, "
                    f"which has no such output (it has: {names}); reconnect the input",
                    node.id, node.type, field))
        return None
    out = src_spec.outputs[index]
    if not registry.compatible(out.type, want):
        add(Problem("type_mismatch", f"output {out.name!r} of node {src.label} gives {out.type} "
                    f"but this takes {want}; connect a {want} output instead",
                    node.id, node.type, field))
    elif src.mode == "bypassed" and not optional and node.mode == "normal":
        passed = graph.inputs_of(src.id)
        if not any(i.type == out.type and i.name in passed for i in src_spec.inputs):
            add(Problem("bypassed_source", f"comes from node {src.label}, which is bypassed and "
                        f"has no connected {out.type} input to pass through; un-bypass it",
                        node.id, node.type, field))
    return index


def _cycle_problems(graph: Graph, cycles: list[list[str]]) -> list[Problem]:
    problems = []
    for members in cycles:
        first = graph.nodes[members[0]]
        problems.append(Problem("cycle", f"nodes {', '.join(members)} form a cycle, so none of them "
                                "can run first; remove one of the links between them", first.id,
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
