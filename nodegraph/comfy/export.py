"""Export a whole graph to ComfyUI's API format, or say which nodes cannot go.

:func:`~nodegraph.comfy.api_format.to_api_prompt` writes what maps and quietly leaves the rest out
(right for the ``prompt`` chunk SaveImage embeds). A user exporting a graph to queue it on a ComfyUI
server wants all of it, so :func:`export_prompt` refuses a graph with nodes ComfyUI would not have.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import UsageError
from ..graph import Graph, id_sort_key
from ..registry import NodeSpec
from .api_format import is_comfy_type, to_api_prompt
from .common import is_placeholder


class UnmappedNodesError(UsageError):
    """The graph has nodes ComfyUI has no equivalent for; ``nodes`` lists ``(node id, type, why)``."""

    def __init__(self, nodes: list[tuple[str, str, str]]):
        self.nodes = nodes
        lines = [f"node {nid} ({t}): {why}" for nid, t, why in nodes]
        super().__init__(f"{len(nodes)} node(s) cannot be exported to ComfyUI's API format:\n"
                         + "\n".join("  " + line for line in lines)
                         + "\nDelete or mute them (or replace them with built-in nodes) and export again.")


def export_prompt(graph: Graph, specs: Mapping[str, NodeSpec]) -> dict[str, dict[str, Any]]:
    """The graph as a ComfyUI API prompt; UnmappedNodesError if any un-muted node cannot be in it.

    Notes (nodes that do nothing when run) are left out, muted nodes too, and bypassed nodes are
    wired through, as ComfyUI's frontend does when it queues a workflow."""
    prompt = to_api_prompt(graph, specs)
    unmapped: list[tuple[str, str, str]] = []
    for node_id in sorted(graph.nodes, key=id_sort_key):
        node = graph.nodes[node_id]
        spec = specs.get(node.type)
        if node.mode == "muted" or node_id in prompt:
            continue
        if spec is not None and (node.mode == "bypassed"
                                 or (not spec.outputs and not spec.output_node)):
            continue
        if is_placeholder(node):
            why = "a placeholder for a ComfyUI type NodeGraph does not have (it cannot run here either)"
        elif not is_comfy_type(node.type):
            why = f"it comes from the node pack {node.type.split('.', 1)[0]!r}; ComfyUI has no such node"
        elif spec is None:
            why = "its type is unknown here (is the built-in node pack loaded?)"
        else:
            why = ("a required input is not connected, or comes (maybe through bypassed nodes) from a "
                   "node that cannot be exported")
        unmapped.append((node_id, node.type, why))
    if unmapped:
        raise UnmappedNodesError(unmapped)
    return prompt
