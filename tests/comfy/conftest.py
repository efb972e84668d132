"""Fixtures of the ComfyUI interop tests: the built-in registry, ComfyUI's workflow templates (the
``comfyui-workflow-templates`` package, a test-only dependency), and a models folder holding tiny random
checkpoints and an upscale model under the file names those templates ask for."""
from __future__ import annotations

from pathlib import Path

import pytest
from comfykit import CHECKPOINTS, ESRGAN_4X, INPAINT_CHECKPOINTS, INPUT_IMAGE, LORAS, MASKED_INPUT_IMAGES, VAE

from nodegraph import RunOptions
from nodegraph.api import Session
from nodegraph.executor import OutputCache
from nodegraph.plugins import load_registry


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models run fastest on one thread (and the CPU is shared)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def registry():
    """The built-in pack alone."""
    reg = load_registry(builtin=True, entry_points=False, folders=[], user=False)
    assert reg.pack("builtin").status == "loaded", reg.pack("builtin").traceback
    return reg


@pytest.fixture(scope="session")
def specs(registry):
    return registry.nodes


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """``checkpoints/`` with a tiny random checkpoint under each name in CHECKPOINTS (family as given),
    ``loras/`` with a tiny random SD1 LoRA under each name in LORAS, ``vae/`` with a tiny random VAE under VAE,
    ``upscale_models/`` with a tiny random 4× ESRGAN (RRDBNet) under ESRGAN_4X."""
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    from nodes.sd.testing import write_random_checkpoint, write_random_lora, write_random_vae

    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints").mkdir()
    for i, (name, family) in enumerate(CHECKPOINTS.items()):
        write_random_checkpoint(root / "checkpoints" / name, family, seed=i)
    for i, (name, family) in enumerate(INPAINT_CHECKPOINTS.items()):
        write_random_checkpoint(root / "checkpoints" / name, family, seed=20 + i, in_channels=9)
    (root / "loras").mkdir()
    for i, name in enumerate(LORAS):
        write_random_lora(root / "loras" / name, "sd1", seed=100 + i)
    (root / "vae").mkdir()
    write_random_vae(root / "vae" / VAE, seed=50)
    (root / "upscale_models").mkdir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)
    save_file(net.state_dict(), str(root / "upscale_models" / ESRGAN_4X))
    return root


@pytest.fixture(scope="session")
def input_dir(tmp_path_factory) -> Path:
    """An input folder with the images the image2image and inpainting templates load (64×64, deterministic;
    the inpainting ones with a transparent square)."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("input")
    pixels = np.random.RandomState(0).randint(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / INPUT_IMAGE, quality=95)
    alpha = np.full((64, 64, 1), 255, dtype=np.uint8)
    alpha[16:40, 20:44] = 0
    for name in MASKED_INPUT_IMAGES:
        Image.fromarray(np.concatenate([pixels, alpha], axis=-1), "RGBA").save(folder / name)
    return folder


@pytest.fixture
def session(registry, models_dir, input_dir, tmp_path, monkeypatch) -> Session:
    """Runs graphs in fp32 on the CPU against ``models_dir`` and ``input_dir``, with its own cache."""
    monkeypatch.setenv("NODEGRAPH_INPUT", str(input_dir))
    options = RunOptions(device="cpu", dtype="fp32", output_dir=tmp_path / "out", models_dirs=(models_dir,))
    return Session(registry, options=options, cache=OutputCache())
