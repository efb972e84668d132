"""Fixtures for the engine tests: a registry of the torch-free test nodes in packs/ngtest."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from nodegraph import Graph, Registry, RunOptions
from nodegraph.executor import Executor, OutputCache
from nodegraph.plugins import import_folder

PACKS = Path(__file__).parent / "packs"
ngtest = import_folder(PACKS / "ngtest")


def make_registry() -> Registry:
    """The test nodes under bare ids (as if they were built-in)."""
    reg = Registry()
    for t in ngtest.nodegraph_register_types():
        reg.add_type(t)
    for spec in ngtest.NODES:
        reg.add_node(spec)
    return reg


@pytest.fixture
def registry() -> Registry:
    return make_registry()


@pytest.fixture(autouse=True)
def _reset_test_pack() -> None:
    ngtest.CALLS.clear()
    ngtest.SINK.clear()


@pytest.fixture
def calls() -> Counter[str]:
    """How often each test node ran (reset for every test)."""
    return ngtest.CALLS


@pytest.fixture
def executor(registry: Registry, tmp_path: Path) -> Executor:
    """An executor with its own cache, so tests do not see each other's outputs."""
    return Executor(registry, OutputCache(), RunOptions(output_dir=tmp_path / "out"))


@pytest.fixture
def chain() -> Graph:
    """Const(2) ─┐
                 Add → Sink
    Const(3) ────┘      and an unconnected Const(99) that no output needs."""
    g = Graph()
    a = g.add_node("Const", {"value": 2})
    b = g.add_node("Const", {"value": 3})
    add = g.add_node("Add")
    sink = g.add_node("Sink")
    g.add_node("Const", {"value": 99}, id="stray")
    g.connect(a, "value", add, "a")
    g.connect(b, "value", add, "b")
    g.connect(add, "sum", sink, "value")
    return g
