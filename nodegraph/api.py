"""The headless Python API: load or build a graph, edit it, validate it, run it, read its outputs.

    from nodegraph import api

    graph = api.load("examples/hello.json")
    result = api.run(graph, out_dir="output", on_event=print)

A :class:`Session` (:mod:`nodegraph.session`) holds a registry (node packs), an executor (with the
process-wide cache) and run options; the module-level functions here use one default session. The
CLI and the editor use the same calls.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import Problem
from .graph import Graph, Node, NodeRef
from .opening import Opened
from .overrides import parse_assignment, parse_value
from .registry import Registry
from .results import RunResult
from .session import Session, default_session

__all__ = ["Session", "add_node", "batch", "connect", "default_session", "interrupt", "load",
           "new_graph", "nodes", "open_graph", "parse_assignment", "parse_value", "run", "save",
           "validate"]


def load(path: str | os.PathLike[str]) -> Graph:
    return default_session().load(path)


def open_graph(path: str | os.PathLike[str]) -> Opened:
    """:func:`load`, telling also the file's format and what an import of a ComfyUI file changed."""
    return default_session().open_graph(path)


def save(graph: Graph, path: str | os.PathLike[str]) -> Path:
    return default_session().save(graph, path)


def new_graph() -> Graph:
    return Graph()


def add_node(graph: Graph, type_id: str, title: str | None = None, **params: Any) -> Node:
    return default_session().add_node(graph, type_id, title, **params)


def connect(graph: Graph, src: NodeRef, output: str, dst: NodeRef, input_name: str) -> None:
    graph.connect(src, output, dst, input_name)


def validate(graph: Graph) -> list[Problem]:
    return default_session().validate(graph)


def run(graph: Graph, **kwargs: Any) -> RunResult:
    return default_session().run(graph, **kwargs)


def interrupt() -> None:
    default_session().interrupt()


def nodes() -> Registry:
    """The registry of the default session (every node type and socket type)."""
    return default_session().registry


def batch(graph: Graph | str | os.PathLike[str] | None, out_dir: str | os.PathLike[str],
          sweeps: Iterable[str] = (), **kwargs: Any) -> Any:
    """Run or resume a batch of sweeps (``["3.seed=0:100", "Positive.text=@prompts.txt"]``) with
    local workers (``workers=N``) or on a Ray cluster (``ray="host:6379"``); returns a
    ``nodegraph.batch.BatchResult``. See ``nodegraph.batch.run_batch`` and docs/batch.md."""
    from .batch import run_batch

    kwargs.setdefault("session", default_session())
    return run_batch(graph, out_dir, sweeps, **kwargs)
