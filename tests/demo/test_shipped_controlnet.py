"""The demo ControlNet ships inside the package, small, float16, in the original ControlNet layout: our
loader and diffusers' single-file converter read it to the same weights, and it fits the demo model.

Tolerance of the residual comparison: tests/sd/test_controlnet.py's (both sides run float32
convolutions and attention over the same weights in different accumulation orders).
"""
from __future__ import annotations

import sys

import pytest
import torch
from shape_analyser import ROOT

sys.path.insert(0, str(ROOT / "tests" / "sd"))  # the diffusers twin of tests/sd/test_controlnet.py
from test_controlnet import assert_same_residuals, diffusers_controlnet, inputs, reference  # noqa: E402

MODELS = ROOT / "nodes" / "models"
CONTROLNET = MODELS / "controlnet" / "demo-shapes-edges.safetensors"
CHECKPOINT = MODELS / "checkpoints" / "demo-shapes.safetensors"


@pytest.fixture(scope="module")
def tensors() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(CONTROLNET))


@pytest.fixture(scope="module")
def ours():
    from nodes.sd.control import load_control

    return load_control(CONTROLNET, dtype=torch.float32)


def test_the_file_weighs_at_most_8_mb_in_float16_under_control_model_keys(tensors):
    assert CONTROLNET.stat().st_size <= 8 * 1024 * 1024
    assert {v.dtype for v in tensors.values()} == {torch.float16}
    assert all(k.startswith("control_model.") for k in tensors)


def test_our_loader_reads_a_controlnet_that_fits_the_demo_model(ours):
    from nodes.sd.checkpoint import load_checkpoint

    demo = load_checkpoint(CHECKPOINT, dtype=torch.float32)
    assert ours.describe() == "ControlNet" and ours.module.config.hint_channels == 3
    ours.check(demo.model)  # raises ControlError if it were made for another model
    assert ours.module.config.unet.model_channels == demo.unet.config.model_channels
    assert ours.module.config.unet.channel_mult == demo.unet.config.channel_mult


def test_diffusers_recognises_the_file_as_a_controlnet(tensors):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    assert infer_diffusers_model_type(tensors) == "controlnet"


@torch.no_grad()
def test_diffusers_converter_reads_the_file_to_the_same_weights_and_residuals(tensors, ours):
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    from nodes.sd.control.files import diffusers_names

    net = ours.module
    ref = diffusers_controlnet(net, device="meta")  # the architecture diffusers derives from the layout
    ref = ref.to_empty(device="cpu")
    converted = convert_controlnet_checkpoint(tensors, ref.config)  # from the file, not from our model
    ref.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True)
    theirs, names = ref.state_dict(), diffusers_names(net.config)
    for name, value in net.state_dict().items():
        assert torch.equal(value, theirs[names[name]]), name
    x, hint, t, context, y = inputs(net.config.unet, seed=3)
    down, mid = reference(ref.eval(), x, hint, t, context, y)
    assert_same_residuals(net(x, hint, t, context), down, mid)


def test_the_packaged_models_folder_lists_it_under_controlnet():
    from nodes.folders import ModelFolders

    folders = ModelFolders(env={}, include_user_dirs=False)
    assert "demo-shapes-edges.safetensors" in folders.list("controlnet")
