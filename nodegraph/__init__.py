"""NodeGraph's engine: graphs as data, node types from pluggy packs, a cached executor.

Nothing here imports torch or Qt. The names most code needs::

    from nodegraph import Graph, node, Int, Float, String, Boolean, Combo, hookimpl
    from nodegraph import api   # load / validate / run
"""
from __future__ import annotations

from .context import RunContext, RunOptions
from .errors import (Absent, GraphLoadError, GraphValidationError, InputError, Interrupted, NodeError,
                     NodeExecutionError, NodeGraphError, Problem, RegistryError, UnknownNodeType,
                     UsageError, WriteError)
from .graph import Graph, Group, Link, Node
from .hookspecs import hookimpl
from .registry import (ANY, BUILTIN_PACK, Boolean, Combo, Float, InputSpec, Int, NodeSpec,
                       OutputSpec, ParamSpec, Registry, SocketType, String, node)

__version__ = "0.1.0"

__all__ = [
    "ANY", "Absent", "BUILTIN_PACK", "Boolean", "Combo", "Float", "Graph", "GraphLoadError",
    "GraphValidationError", "Group", "InputError", "InputSpec", "Int", "Interrupted", "Link", "Node",
    "NodeError", "NodeExecutionError", "NodeGraphError", "NodeSpec", "OutputSpec", "ParamSpec",
    "Problem", "Registry", "RegistryError", "RunContext", "RunOptions", "SocketType", "String",
    "UnknownNodeType", "UsageError", "WriteError", "hookimpl", "node", "__version__",
]
