"""Every sampler × every scheduler runs 4 KSampler steps on the shipped demo model without error or NaN.

The demo checkpoint is the real thing a new user runs (SD1 layout, eps); CFG 5 with a prompt and a
negative exercises the guided path, CFG++ samplers included. 8×8 latent (64×64 pixels), fp32.
"""
from __future__ import annotations

import pathlib

import pytest
import torch

from nodes.sd import ksampler as K
from nodes.sd.samplers import SAMPLER_NAMES
from nodes.sd.schedulers import SCHEDULER_NAMES

CHECKPOINT = pathlib.Path(__file__).resolve().parents[2] / "nodes" / "models" / "checkpoints" / "demo-shapes.safetensors"


@pytest.fixture(scope="module")
def demo():
    from nodes.sd.checkpoint import load_checkpoint

    loaded = load_checkpoint(CHECKPOINT, dtype=torch.float32)
    positive, negative = ([[loaded.text_encoder.encode(text)[0], {}]] for text in ("a red circle", "blurry"))
    return loaded.model, positive, negative


@pytest.mark.parametrize("sampler_name", SAMPLER_NAMES)
def test_sampler_runs_four_steps_on_the_demo_model_with_every_scheduler(demo, sampler_name):
    model, positive, negative = demo
    for scheduler in SCHEDULER_NAMES:
        out = K.sample(model, {"samples": torch.zeros(1, 4, 8, 8)}, positive, negative, seed=3, steps=4, cfg=5.0,
                       sampler_name=sampler_name, scheduler=scheduler)["samples"]
        assert out.shape == (1, 4, 8, 8), (sampler_name, scheduler)
        assert torch.isfinite(out).all(), f"{sampler_name} × {scheduler} gave non-finite values"
        assert out.abs().max() < 1e3, f"{sampler_name} × {scheduler} diverged (max |x| {out.abs().max():.3g})"
