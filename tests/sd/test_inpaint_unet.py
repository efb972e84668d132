"""Inpainting (9-channel) and InstructPix2Pix (8-channel) U-Nets: a checkpoint file is read as such, its U-Net
computes what diffusers' UNet2DConditionModel(in_channels=9 or 8) computes on the weights diffusers' own
single-file converter takes from the same file, and the sampling view feeds it the scaled latent followed by
the extra channels, as ComfyUI's BaseModel does."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file

from nodes.sd.checkpoint import CheckpointError, load_checkpoint
from nodes.sd.inpaint import concat_kind, latent_channels
from nodes.sd.testing import write_random_checkpoint
from nodes.sd.unet import UNetModel, full_config, ldm_yaml_config, sdxl_adm

os.environ.setdefault("HF_HUB_OFFLINE", "1")
diffusers = pytest.importorskip("diffusers")
from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.loaders.single_file_utils import (  # noqa: E402
    convert_ldm_unet_checkpoint,
    create_unet_diffusers_config_from_ldm,
)
from numerics import rel_err  # noqa: E402

PREFIX = "model.diffusion_model."


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny single-file inpainting checkpoints of SD1, SD2 and SDXL, and an SD1 InstructPix2Pix one."""
    folder = tmp_path_factory.mktemp("inpaint-checkpoints")
    out = {f"{family}-inpainting": write_random_checkpoint(folder / f"{family}-inpainting.safetensors", family,
                                                          in_channels=9, seed=i, prediction=None)
           for i, family in enumerate(("sd1", "sd2", "sdxl"))}
    out["sd1-ip2p"] = write_random_checkpoint(folder / "sd1-ip2p.safetensors", "sd1", in_channels=8, seed=7)
    return out


def diffusers_from_file(path, config) -> UNet2DConditionModel:
    """diffusers' U-Net with the weights its converter takes from the checkpoint file itself."""
    checkpoint = {k: v for k, v in load_file(str(path)).items() if k.startswith(PREFIX)}
    dconfig = create_unet_diffusers_config_from_ldm(ldm_yaml_config(config), checkpoint)
    converted = convert_ldm_unet_checkpoint(checkpoint, dconfig)
    model = UNet2DConditionModel(**dconfig)
    model.load_state_dict(converted, strict=True)
    return model.eval()


def inputs(channels, context_dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, channels, 8, 8, generator=g), torch.tensor([901.0, 33.0]),
            torch.randn(2, 7, context_dim, generator=g))


@pytest.mark.parametrize("name,kind", [("sd1-inpainting", "inpaint"), ("sd2-inpainting", "inpaint"),
                                       ("sdxl-inpainting", "inpaint"), ("sd1-ip2p", "ip2p")])
def test_unet_of_the_file_matches_diffusers_converted_from_the_same_file(files, name, kind):
    loaded = load_checkpoint(files[name])
    unet = loaded.unet
    ref = diffusers_from_file(files[name], unet.config)
    channels = 9 if kind == "inpaint" else 8
    assert ref.config.in_channels == unet.config.in_channels == channels
    assert concat_kind(unet) == kind and latent_channels(unet) == 4
    x, t, context = inputs(channels, unet.config.context_dim)
    with torch.no_grad():
        if loaded.family == "sdxl":
            # The tiny file's context is narrower than SDXL's 2048, so diffusers' converter reads its size/pooled
            # embedding as a "projection" class embedding: the same layers applied to the same y.
            pooled = torch.randn(2, unet.config.adm_in_channels - 6 * 256, generator=torch.Generator().manual_seed(3))
            y = sdxl_adm(pooled, 640, 512, 8, 0, 640, 512)
            ours, theirs = unet(x, t, context, y), ref(x, t, encoder_hidden_states=context, class_labels=y).sample
        else:
            ours, theirs = unet(x, t, context), ref(x, t, encoder_hidden_states=context).sample
    assert ours.shape == (2, 4, 8, 8)
    assert rel_err(ours, theirs) <= 1e-4  # the same convolutions and attention in another order (tests/sd/test_unet.py)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_full_size_inpainting_keys_and_shapes_are_what_diffusers_converts(family):
    config = full_config(family).__class__(**{**full_config(family).__dict__, "in_channels": 9})
    with torch.device("meta"):
        model = UNetModel(config)
    checkpoint = {PREFIX + k: v for k, v in model.state_dict().items()}
    dconfig = create_unet_diffusers_config_from_ldm(ldm_yaml_config(config), checkpoint)
    converted = convert_ldm_unet_checkpoint(checkpoint, dconfig)
    with torch.device("meta"):
        ref = UNet2DConditionModel(**dconfig)
    assert dconfig["in_channels"] == 9
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ref.state_dict().items()}


def test_apply_model_feeds_the_scaled_latent_then_the_extra_channels(files):
    """D(x; σ) = x − σ·ε(cat[x/√(σ²+1), c], t(σ)) for an ε model: written out here with diffusers' U-Net."""
    loaded = load_checkpoint(files["sd1-inpainting"])
    model, ms = loaded.model, loaded.model.model_sampling
    ref = diffusers_from_file(files["sd1-inpainting"], loaded.unet.config)
    g = torch.Generator().manual_seed(9)
    x, c = torch.randn(2, 4, 8, 8, generator=g) * 5, torch.randn(2, 5, 8, 8, generator=g)
    context = torch.randn(2, 7, loaded.unet.config.context_dim, generator=g)
    sigma = torch.tensor([4.5, 0.8])
    with torch.no_grad():
        ours = model.apply_model(x, sigma, context, c_concat=c)
        scaled = x / (sigma.view(-1, 1, 1, 1) ** 2 + 1) ** 0.5
        eps = ref(torch.cat([scaled, c], 1), ms.timestep(sigma), encoder_hidden_states=context).sample
        expected = x - sigma.view(-1, 1, 1, 1) * eps
    assert rel_err(ours, expected) <= 1e-4


def test_sd2_inpainting_is_read_as_epsilon_prediction_without_metadata(files):
    """(ComfyUI's rule: SD2 inpainting models are not v-prediction; the weight-statistics test is for 4 channels.)"""
    loaded = load_checkpoint(files["sd2-inpainting"])
    assert (loaded.family, loaded.prediction, loaded.prediction_source) == ("sd2", "eps", "default")


def test_a_unet_with_channels_nodegraph_cannot_feed_is_refused_naming_the_file(tmp_path):
    path = write_random_checkpoint(tmp_path / "odd.safetensors", "sd1", in_channels=7)
    with pytest.raises(CheckpointError, match=r"odd\.safetensors.*7 input channels"):
        load_checkpoint(path)
