"""tools/train_demo_controlnet.py --smoke trains a few steps on the shipped demo model and writes a ControlNet
file of the shipped layout, which loads, fits the demo model and has learnt (its zero convs moved)."""
from __future__ import annotations

import os
import subprocess
import sys

import torch
from shape_analyser import ROOT


def test_a_smoke_run_writes_a_controlnet_that_loads_and_fits_the_demo_model(tmp_path):
    from nodes.sd.checkpoint import load_checkpoint
    from nodes.sd.control import load_control

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train_demo_controlnet.py"), "--smoke", "--threads", "1",
                           "--precision", "fp32", "--work-dir", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    path = tmp_path / "models" / "controlnet" / "demo-shapes-edges.safetensors"
    control = load_control(path, dtype=torch.float32)
    control.check(load_checkpoint(ROOT / "nodes" / "models" / "checkpoints" / "demo-shapes.safetensors").model)
    zero_conv = control.module.zero_convs[0][0].weight
    assert zero_conv.abs().max() > 0  # initialised to zero, moved by training
