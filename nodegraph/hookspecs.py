"""The hooks a node pack implements. Each is documented, with an example, in docs/plugins.md.

A pack is a module (or any object) with functions decorated by :data:`hookimpl`::

    from nodegraph import hookimpl

    @hookimpl
    def nodegraph_register_nodes():
        return [my_node, my_other_node]

The built-in pack (``nodes/``) registers through these same hooks.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .registry import ModelLocator, NodeSpec, SocketType

PROJECT = "nodegraph"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def nodegraph_register_types() -> Iterable[SocketType]:
    """Return the socket types (name and colour) that this pack's nodes use and no other pack is
    guaranteed to register. Called once per pack when packs load, before any
    ``nodegraph_register_nodes``. Registering a name that exists keeps the first definition."""


@hookspec
def nodegraph_register_nodes() -> Iterable[NodeSpec]:
    """Return this pack's node types (NodeSpec objects, usually made with ``@node``). Called once
    per pack when packs load. Ids are namespaced as ``<pack>.<id>`` except in the built-in pack.
    If anything in the pack is invalid, none of its nodes are registered and the pack is listed
    as failed (``nodegraph plugins``)."""


@hookspec
def nodegraph_model_locators() -> Iterable[ModelLocator]:
    """Return functions ``locate(name, options) -> Path | None`` that find the model file a param
    value names (``"sd15.safetensors"``) in the model folders of a run (``options``: RunOptions), or
    None. Called once per pack when packs load, after its nodes are registered. Batches hash the
    files found, so that an item's key changes with the model file; the first locator that finds a
    file wins."""
