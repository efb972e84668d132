"""Example node pack: a prompt template, an image inverter and a text saver.

It shows everything a pack needs: hook implementations that return NodeSpecs made with ``@node``,
params, a multi-line string, an output node that writes into the output folder and reports its
files through ``ctx.ui``. Its type ids are namespaced: ``example_pack.PromptTemplate`` etc.
"""
from __future__ import annotations

from nodegraph import NodeSpec, hookimpl

from .nodes import NODES


@hookimpl
def nodegraph_register_nodes() -> list[NodeSpec]:
    return NODES
