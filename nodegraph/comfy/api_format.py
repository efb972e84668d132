"""Export a graph to ComfyUI's API format (the JSON its ``/prompt`` endpoint takes and its PNGs carry)::

    {"3": {"class_type": "KSampler",
           "inputs": {"seed": 42, "steps": 20, ..., "model": ["4", 0], "positive": ["6", 0]},
           "_meta": {"title": "KSampler"}},
     ...}

Params and links both go into ``inputs``: a param by value, a link as ``[source node id, output
index]``. Built-in node types carry ComfyUI's names, inputs and params, so they map one to one; other
packs' types (ids with a ``.``) and every node that depends on one are left out, as are muted
nodes. Bypassed nodes are wired through as the executor runs them: each consumer of a bypassed
node's output takes the node's first connected input of the same type instead.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..graph import Graph, Link, Node, id_sort_key
from ..registry import NodeSpec
from .common import kept_inputs
from .prompt_text import export_value


COMFY_ONLY_INPUTS: dict[str, dict[str, Any]] = {
    "VAEDecodeTiled": {"temporal_size": 64, "temporal_overlap": 8},
    "VAEEncodeTiled": {"temporal_size": 64, "temporal_overlap": 8},
}
"""Inputs ComfyUI's node requires that ours does not have (video VAEs only), at ComfyUI's defaults."""


def is_comfy_type(type_id: str) -> bool:
    """Whether a node type maps to a ComfyUI class of the same name (the built-in pack's bare ids)."""
    return bool(type_id) and "." not in type_id


def _resolve(graph: Graph, specs: Mapping[str, NodeSpec], link: Link) -> tuple[str, int] | None:
    """The (source node id, output index) a link really reads, following bypassed nodes; None if the
    value comes from nowhere exportable."""
    seen: set[str] = set()
    while True:
        src = graph.nodes.get(link.src)
        spec = specs.get(src.type) if src is not None else None
        if src is None or spec is None or src.mode == "muted" or src.id in seen:
            return None
        index = spec.output_index(link.output)
        if index < 0:
            return None
        if src.mode != "bypassed":
            return src.id, index
        seen.add(src.id)
        out_type = spec.outputs[index].type
        feeding = graph.inputs_of(src.id)
        through = next((feeding[i.name] for i in spec.inputs
                        if i.type == out_type and i.name in feeding), None)
        if through is None:
            return None
        link = through


def _entry(node: Node, spec: NodeSpec, links: dict[str, list[Any]]) -> dict[str, Any]:
    inputs: dict[str, Any] = dict(COMFY_ONLY_INPUTS.get(node.type, {}))
    inputs.update(kept_inputs(node))  # values an import kept for inputs we do not have
    for p in spec.params:
        inputs[p.name] = export_value(node.type, p.name, node.params.get(p.name, p.default))
    inputs.update(links)
    return {"class_type": node.type, "inputs": inputs,
            "_meta": {"title": node.title or spec.display_name or node.type}}


def to_api_prompt(graph: Graph, specs: Mapping[str, NodeSpec]) -> dict[str, dict[str, Any]]:
    """The graph in ComfyUI's API format, for the nodes that map (see the module docstring).

    ``specs`` maps type ids to specs (a ``Registry.nodes``, or the built-in pack's specs); node types
    without a spec there do not map. Node ids are kept; entries are in id order.
    """
    candidates: dict[str, tuple[Node, NodeSpec, dict[str, tuple[str, int] | None]]] = {}
    for node in graph.nodes.values():
        spec = specs.get(node.type)
        if spec is None or node.mode != "normal" or not is_comfy_type(node.type):
            continue
        if not spec.outputs and not spec.output_node:
            continue  # does nothing when run (a note): ComfyUI's prompts have no such nodes
        sources = {name: _resolve(graph, specs, link) for name, link in graph.inputs_of(node.id).items()
                   if spec.input(name) is not None or spec.param(name) is not None}
        candidates[node.id] = (node, spec, sources)

    # Drop nodes whose required inputs cannot be exported, and then their consumers, until stable.
    # A link that cannot be exported into a param or an optional input is left out instead (the
    # param's own value, or nothing, goes to ComfyUI).
    changed = True
    while changed:
        changed = False
        for node_id, (node, spec, sources) in list(candidates.items()):
            for name, src in list(sources.items()):
                if src is None or src[0] not in candidates:
                    inp = spec.input(name)
                    if inp is None or inp.optional:
                        del sources[name]
            if any(not i.optional and (sources.get(i.name) is None or sources[i.name][0] not in candidates)
                   for i in spec.inputs):
                del candidates[node_id]
                changed = True

    prompt: dict[str, dict[str, Any]] = {}
    for node_id in sorted(candidates, key=id_sort_key):
        node, spec, sources = candidates[node_id]
        links = {name: [src[0], src[1]] for name, src in sorted(sources.items()) if src is not None}
        prompt[node_id] = _entry(node, spec, links)
    return prompt

