"""Fixtures for the batch tests: the torch-free ``batchtest`` pack (found by every worker process
through NODEGRAPH_PLUGIN_PATH), a models folder with a fake checkpoint, a small sweepable graph."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodegraph import Graph, RunOptions
from nodegraph import format as graph_format
from nodegraph.api import Session

PACKS = Path(__file__).parent / "packs"

# Set before any Session discovers packs, so that spawned workers (and Ray nodes started by the
# tests) inherit it.
os.environ["NODEGRAPH_PLUGIN_PATH"] = str(PACKS)
# Ray (if the tests use it) must resolve this machine to 127.0.0.1; it reads this at import.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


def write_models(root: Path, content: bytes = b"weights " * 512) -> Path:
    """A models root with ``checkpoints/blob.safetensors``."""
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    (root / "checkpoints" / "blob.safetensors").write_bytes(content)
    return root


def blob_graph(delay: float = 0.0, batch_size: int = 1, fail_seed: int = -1,
               crash_seed: int = -1) -> Graph:
    """LoadBlob(1) → Render(2, titled "Sampler") → SavePNG(3)."""
    g = Graph()
    a = g.add_node("batchtest.LoadBlob", {"ckpt_name": "blob.safetensors"}, id="1", pos=(0, 0))
    b = g.add_node("batchtest.Render", {"seed": 0, "prompt": "a fox", "delay": delay,
                                        "batch_size": batch_size, "fail_seed": fail_seed,
                                        "crash_seed": crash_seed},
                   id="2", title="Sampler", pos=(200, 0))
    c = g.add_node("batchtest.SavePNG", {"filename_prefix": "bt"}, id="3", pos=(400, 0))
    g.connect(a, "BLOB", b, "blob")
    g.connect(b, "PIXELS", c, "pixels")
    return g


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return write_models(tmp_path / "models")


@pytest.fixture
def session(models: Path) -> Session:
    return Session(options=RunOptions(models_dirs=(models,)))


@pytest.fixture
def graph() -> Graph:
    return blob_graph()


@pytest.fixture
def graph_file(tmp_path: Path, graph: Graph) -> Path:
    return graph_format.save(graph, tmp_path / "graph.json")


def output_files(folder: Path) -> list[str]:
    """Names of the outputs in a batch folder (what is neither bookkeeping nor hidden)."""
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix == ".png")


def leftovers(folder: Path) -> list[str]:
    """Temporary files (hidden files) anywhere under a batch folder."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))
