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


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TXT2IMG_SWEEPS = ["Sampler.seed=0:4", "Positive.text=a red fox,an owl at night"]  # 8 items


def txt2img_graph(pause: float = 0.0) -> Graph:
    """examples/txt2img.json on the tiny random checkpoint: 64×64, 2 steps, fp32 — with an optional
    ``batchtest.Pause`` between decode and save (so a test can kill a worker mid-item)."""
    g = graph_format.load(EXAMPLES / "txt2img.json")
    g.set_param("4", "ckpt_name", "tiny-sd1.safetensors")
    g.set_param("3", "steps", 2)
    g.set_param("5", "width", 64)
    g.set_param("5", "height", 64)
    if pause:
        g.disconnect("9", "images")
        p = g.add_node("batchtest.Pause", {"seconds": pause}, id="10", pos=(1360, 400))
        g.connect("8", "IMAGE", p, "images")
        g.connect(p, "IMAGE", "9", "images")
    return g


@pytest.fixture(scope="session")
def sd_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root holding ``checkpoints/tiny-sd1.safetensors`` (random tiny SD1 weights)."""
    from nodes.sd.testing import write_random_checkpoint

    root = tmp_path_factory.mktemp("sd-models")
    (root / "checkpoints").mkdir()
    write_random_checkpoint(root / "checkpoints" / "tiny-sd1.safetensors", "sd1", tiny=True)
    return root


def sd_options(models: Path) -> RunOptions:
    return RunOptions(models_dirs=(models,), dtype="fp32", device="cpu")


@pytest.fixture
def sd_session(sd_models: Path) -> Session:
    return Session(options=sd_options(sd_models))


PAUSE = 0.3


@pytest.fixture(scope="session")
def sd_reference(sd_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The txt2img sweep (with the pause) run item after item in this process, one torch thread:
    the bytes every distributed run must reproduce."""
    from nodegraph.batch import run_batch

    out = tmp_path_factory.mktemp("sd-reference")
    result = run_batch(txt2img_graph(PAUSE), out, TXT2IMG_SWEEPS,
                       session=Session(options=sd_options(sd_models)), workers=0, threads=1,
                       handle_sigint=False)
    assert result.complete and len(output_files(out)) == 8
    return {name: (out / name).read_bytes() for name in output_files(out)}


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
