"""Upscale-model nodes: UpscaleModelLoader and ImageUpscaleWithModel."""
from __future__ import annotations

import pytest
import torch
from nodekit import UPSCALE_MODEL, FakeContext, options_for

from nodegraph import Interrupted
from nodes.sd.upscale import upscale_image
from nodes.upscale import image_upscale_with_model, upscale_model_loader


@pytest.fixture
def model(models_dir):
    return upscale_model_loader(model_name=UPSCALE_MODEL, ctx=FakeContext(options_for(models_dir)))


def test_upscale_model_loader_reads_the_architecture_and_scale(models_dir):
    ctx = FakeContext(options_for(models_dir))
    model = upscale_model_loader(model_name=UPSCALE_MODEL, ctx=ctx)
    assert model.scale == 2 and model.architecture == "Compact"
    assert ctx.ui["model"]["scale"] == 2
    assert upscale_model_loader(model_name=UPSCALE_MODEL, ctx=ctx) is model  # kept loaded


def test_upscale_model_choices_list_the_upscale_models_folder(registry, models_dir):
    param = registry["UpscaleModelLoader"].param("model_name")
    # the shipped demo upscaler is always listed too (ARCHITECTURE: models roots)
    assert param.resolve_choices(options_for(models_dir)) == tuple(sorted((UPSCALE_MODEL, "demo-shapes-2x.safetensors")))


def test_image_upscale_with_model_equals_the_tiled_upscaler(model, models_dir):
    image = torch.rand(2, 24, 40, 3, generator=torch.Generator().manual_seed(0))
    ctx = FakeContext(options_for(models_dir))
    out = image_upscale_with_model(upscale_model=model, image=image, ctx=ctx)
    assert out.shape == (2, 48, 80, 3)
    torch.testing.assert_close(out, upscale_image(model, image, tile=512, overlap=32), rtol=0, atol=0)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_image_upscale_with_model_reports_progress_and_can_be_stopped(model, models_dir):
    image = torch.rand(1, 16, 16, 3)
    ctx = FakeContext(options_for(models_dir))
    image_upscale_with_model(upscale_model=model, image=image, ctx=ctx)
    assert [(s, t) for s, t, _ in ctx.progress_calls] == [(1, 1)]
    stopping = FakeContext(options_for(models_dir), stop_after=1)
    with pytest.raises(Interrupted):
        image_upscale_with_model(upscale_model=model, image=image, ctx=stopping)
