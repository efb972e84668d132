"""A torch-free node pack for the editor's tests, benchmark and screenshots.

Small real nodes (numbers, text, numpy images, a slow node that reports progress with previews
and can be interrupted, a node that fails, an output node that shows images) and nodes shaped
like the Stable Diffusion pack's (same sockets and params, trivial bodies) so that large graphs
look and weigh like real ones.
"""
from __future__ import annotations

from nodegraph import NodeSpec, SocketType, hookimpl

from .nodes import NODES, SOCKET_TYPES


@hookimpl
def nodegraph_register_types() -> list[SocketType]:
    return list(SOCKET_TYPES)


@hookimpl
def nodegraph_register_nodes() -> list[NodeSpec]:
    return list(NODES)
