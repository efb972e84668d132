"""Fixtures of the node tests: a models folder with tiny random SD1/SD2/SDXL checkpoints, a standalone VAE
and a small upscale model; a session that runs graphs against it; helpers to build and run graphs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nodekit import FAMILIES, UPSCALE_MODEL, FakeContext, options_for

from nodegraph import RunOptions
from nodegraph.api import Session
from nodegraph.executor import OutputCache
from nodegraph.plugins import load_registry


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models run fastest on one thread, and on a shared CPU several OpenMP threads per process
    spin against each other (a 20 ms U-Net call then takes seconds)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """``models/`` with ``checkpoints/{sd1,sd2,sdxl}.safetensors`` (tiny, random, fp32),
    ``vae/tiny-vae.safetensors`` and ``upscale_models/compact-2x.safetensors``."""
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact

    from nodes.sd.testing import write_random_checkpoint, write_random_vae

    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints").mkdir()
    for family in FAMILIES:
        write_random_checkpoint(root / "checkpoints" / f"{family}.safetensors", family)
    (root / "vae").mkdir()
    write_random_vae(root / "vae" / "tiny-vae.safetensors", seed=7)
    (root / "upscale_models").mkdir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    save_file(net.state_dict(), str(root / "upscale_models" / UPSCALE_MODEL))
    return root


@pytest.fixture(scope="session")
def registry():
    """The built-in pack alone."""
    reg = load_registry(builtin=True, entry_points=False, folders=[], user=False)
    assert reg.pack("builtin").status == "loaded", reg.pack("builtin").traceback
    return reg


@pytest.fixture
def out_dir(tmp_path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def session(registry, models_dir, out_dir) -> Session:
    """Runs graphs in fp32 on the CPU against ``models_dir``, with its own output cache."""
    options = RunOptions(device="cpu", dtype="fp32", output_dir=out_dir, models_dirs=(models_dir,))
    return Session(registry, options=options, cache=OutputCache())


@pytest.fixture(scope="session")
def load(models_dir):
    """``load(family) -> (MODEL, CLIP, VAE)`` of the tiny checkpoint, through CheckpointLoaderSimple in fp32."""
    from nodes.loaders import checkpoint_loader_simple

    loaded: dict[str, tuple] = {}

    def get(family: str) -> tuple:
        if family not in loaded:
            ctx = FakeContext(options_for(models_dir))
            loaded[family] = checkpoint_loader_simple(ckpt_name=f"{family}.safetensors", ctx=ctx)
        return loaded[family]

    return get
