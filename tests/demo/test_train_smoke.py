"""``tools/train_demo.py --smoke``: every training stage runs, and the two files it writes are models
NodeGraph loads and the demo graph runs on (they draw nothing meaningful after a few steps).

One smoke run for the module (about 14 s of CPU time, one thread as the suite sets it; see the
script's docstring), then a demo-graph run through the CLI on its files. The whole file takes about
30 s of CPU time (measured: 74 s wall at ``nice -n 10`` while other processes kept both cores busy).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from shape_analyser import ROOT

SCRIPT = ROOT / "tools" / "train_demo.py"


def run(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    work = tmp_path_factory.mktemp("train-smoke")
    proc = run(str(SCRIPT), "--smoke", "--work-dir", str(work))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, proc


def test_the_smoke_run_writes_both_files_under_the_work_dir(smoke):
    work, proc = smoke
    models = work / "models"
    assert (models / "checkpoints" / "demo-shapes.safetensors").is_file()
    assert (models / "upscale_models" / "demo-shapes-2x.safetensors").is_file()
    assert f"wrote {models / 'checkpoints' / 'demo-shapes.safetensors'}" in proc.stdout


def test_the_smoke_run_trains_every_stage(smoke):
    _, proc = smoke
    for stage in ("vae: 6 steps", "unet: 6 steps", "decoder: 3 steps", "upscaler: 6 steps"):
        assert stage in proc.stdout, proc.stdout


def test_the_smoke_checkpoint_loads_as_the_shipped_sd1_layout(smoke):
    import torch

    from nodes.sd.checkpoint import load_checkpoint

    demo = load_checkpoint(smoke[0] / "models" / "checkpoints" / "demo-shapes.safetensors")
    assert (demo.family, demo.prediction, demo.latent_scale) == ("sd1", "eps", 0.18215)
    shipped = load_checkpoint(ROOT / "nodes" / "models" / "checkpoints" / "demo-shapes.safetensors")
    assert demo.unet.config == shipped.unet.config and demo.vae.config == shipped.vae.config
    assert demo.text_encoder.models["l"].config == shipped.text_encoder.models["l"].config
    assert all(t.dtype == torch.float16 for t in demo.vae.model.state_dict().values())


def test_the_smoke_upscaler_loads_as_a_2x_compact_model(smoke):
    from nodes.sd.upscale import load_upscale_model

    model = load_upscale_model(smoke[0] / "models" / "upscale_models" / "demo-shapes-2x.safetensors")
    assert (model.architecture, model.scale) == ("Compact", 2)


def test_the_demo_graph_runs_on_the_smoke_files(smoke, tmp_path):
    """Under names only the smoke files have, so that the shipped models cannot stand in for them."""
    models = tmp_path / "models"
    for folder, name, new in (("checkpoints", "demo-shapes", "smoke-shapes"),
                              ("upscale_models", "demo-shapes-2x", "smoke-shapes-2x")):
        (models / folder).mkdir(parents=True)
        shutil.copy(smoke[0] / "models" / folder / f"{name}.safetensors", models / folder / f"{new}.safetensors")
    out = tmp_path / "out"
    proc = run("-m", "nodegraph", "run", str(ROOT / "examples" / "demo.json"), "--models", str(models),
               "--out", str(out), "--set", "1.ckpt_name=smoke-shapes.safetensors",
               "--set", "7.model_name=smoke-shapes-2x.safetensors", "--set", "5.steps=2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = sorted(out.rglob("*.png"))
    assert len(saved) == 1 and Image.open(saved[0]).size == (128, 128)
