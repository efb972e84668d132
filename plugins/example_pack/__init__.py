"""Example node pack: a prompt template, an image inverter and a text saver.

It shows everything a pack needs: hook implementations that return socket types and NodeSpecs
made with ``@node``, params, a multi-line string, an output node that writes into the output
folder and reports its files through ``ctx.ui``. Its type ids are namespaced:
``example_pack.PromptTemplate`` etc.
"""
from __future__ import annotations

from nodegraph import NodeSpec, SocketType, hookimpl

from .nodes import NODES


@hookimpl
def nodegraph_register_types() -> list[SocketType]:
    # IMAGE is also registered by the built-in pack; declaring it here keeps this pack usable
    # on its own. The first registration wins, so use the same name and colour.
    return [SocketType("IMAGE", "#64b5f6", "images: [B,H,W,C] in 0..1")]


@hookimpl
def nodegraph_register_nodes() -> list[NodeSpec]:
    return NODES
