"""The U-Net computes what diffusers' UNet2DConditionModel computes on the same weights, and reads
its own architecture back from a state dict.

Weights go to diffusers' layout through diffusers' own single-file converter
(`convert_ldm_unet_checkpoint` with the config from `create_unet_diffusers_config_from_ldm`), fed a
checkpoint with the real `model.diffusion_model.` prefix and an LDM/sgm yaml-shaped config.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

import nodes.sd.unet as unet_module
from nodes.sd.unet import (
    FAMILIES,
    Conv2d,
    UNetConfig,
    UNetModel,
    config_from_state_dict,
    full_config,
    ldm_yaml_config,
    sdxl_adm,
    sdxl_refiner_adm,
    tiny_config,
    timestep_embedding,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
diffusers = pytest.importorskip("diffusers")
from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.loaders.single_file_utils import (  # noqa: E402
    convert_ldm_unet_checkpoint,
    create_unet_diffusers_config_from_ldm,
)
from numerics import path_rtol, rel_err

PREFIX = "model.diffusion_model."


def random_unet(config: UNetConfig, seed: int = 0) -> UNetModel:
    """PyTorch's default init, plus noise on every 1-D parameter so that no norm is the identity and
    no bias is zero: a key mapped to the wrong place changes the output."""
    torch.manual_seed(seed)
    model = UNetModel(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def diffusers_twin(model: UNetModel, device: str | None = None) -> UNet2DConditionModel:
    checkpoint = {PREFIX + k: v for k, v in model.state_dict().items()}
    config = create_unet_diffusers_config_from_ldm(ldm_yaml_config(model.config), checkpoint)
    converted = convert_ldm_unet_checkpoint(checkpoint, config)
    assert len(converted) == len(checkpoint)
    with torch.device(device or "cpu"):
        ref = UNet2DConditionModel(**config)
    if device != "meta":
        ref.load_state_dict(converted, strict=True)
    else:
        assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ref.state_dict().items()}
    return ref.eval()


def inputs(cfg: UNetConfig, h: int = 8, w: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cfg.in_channels, h, w, generator=g)
    t = torch.tensor([981.0, 17.5])
    context = torch.randn(2, 7, cfg.context_dim, generator=g)
    return x, t, context


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_matches_diffusers_for_text_conditioned_families(family):
    model = random_unet(tiny_config(family))
    ref = diffusers_twin(model)
    x, t, context = inputs(model.config)
    with torch.no_grad():
        ours = model(x, t, context)
        theirs = ref(x, t, encoder_hidden_states=context).sample
    assert rel_err(ours, theirs) <= 1e-4


@pytest.mark.parametrize(
    "forced",
    [("GEMM_CONV_MIN_WEIGHT_PER_PIXEL", 0), ("FF_CHUNK_ELEMENTS", 1000)],
    ids=["every-conv-as-unfold-and-matmul", "feed-forward-in-slices"],
)
def test_matches_diffusers_with_the_cpu_fast_paths_forced(monkeypatch, forced):
    monkeypatch.setattr(unet_module, *forced)
    model = random_unet(tiny_config("sd1"), seed=5)
    ref = diffusers_twin(model)
    x, t, context = inputs(model.config, h=9, w=12)
    with torch.no_grad():
        ours = model(x, t, context)
        theirs = ref(x, t, encoder_hidden_states=context).sample
    assert rel_err(ours, theirs) <= 1e-4


@pytest.mark.parametrize("stride,size", [(1, (1, 3)), (2, (3, 3)), (2, (4, 2))])
def test_conv_on_a_small_map_runs_as_matmul_and_equals_convolution(monkeypatch, stride, size):
    torch.manual_seed(0)
    conv = Conv2d(256, 128, 3, stride=stride, padding=1)
    small, large = torch.randn(1, 256, *size), torch.randn(2, 256, 16, 16)
    onednn_calls = []
    onednn = torch.nn.Conv2d.forward
    monkeypatch.setattr(torch.nn.Conv2d, "forward", lambda self, x: onednn_calls.append(x.shape) or onednn(self, x))
    with torch.no_grad():
        ours_small, ours_large = conv(small), conv(large)
        ref_small = F.conv2d(small, conv.weight, conv.bias, stride=stride, padding=1)
        ref_large = F.conv2d(large, conv.weight, conv.bias, stride=stride, padding=1)
    assert onednn_calls == [large.shape]  # the small map went through unfold + matmul
    assert ours_small.shape == ref_small.shape
    # unfold + matmul against oneDNN's convolution: the same sums in another order (tests/numerics.py)
    bound = path_rtol(conv)
    assert rel_err(ours_small, ref_small) <= bound and rel_err(ours_large, ref_large) <= bound


def test_gradients_match_diffusers(monkeypatch):
    """The in-place shortcuts of the inference path stay out of the way of autograd."""
    monkeypatch.setattr(unet_module, "GEMM_CONV_MIN_WEIGHT_PER_PIXEL", 0)
    model = random_unet(tiny_config("sd2"), seed=6)
    ref = diffusers_twin(model)
    x, t, context = inputs(model.config)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    model(x_ours, t, context).square().sum().backward()
    ref(x_ref, t, encoder_hidden_states=context).sample.square().sum().backward()
    assert rel_err(x_ours.grad, x_ref.grad) <= 1e-4
    assert rel_err(model.input_blocks[0][0].weight.grad, ref.conv_in.weight.grad) <= 1e-4


def test_matches_diffusers_on_latents_not_divisible_by_the_downsampling():
    model = random_unet(tiny_config("sd1"), seed=3)
    ref = diffusers_twin(model)
    x, t, context = inputs(model.config, h=9, w=13)
    with torch.no_grad():
        ours = model(x, t, context)
        theirs = ref(x, t, encoder_hidden_states=context).sample
    assert ours.shape == (2, 4, 9, 13)
    assert rel_err(ours, theirs) <= 1e-4


def test_sdxl_matches_diffusers_with_size_crop_and_pooled_conditioning():
    model = random_unet(tiny_config("sdxl"), seed=1)
    ref = diffusers_twin(model)
    x, t, context = inputs(model.config, h=8, w=12)
    pooled = torch.randn(2, 1280, generator=torch.Generator().manual_seed(5))
    y = sdxl_adm(pooled, width=1024, height=768, crop_w=16, crop_h=48, target_width=896, target_height=1152)
    time_ids = torch.tensor([[768.0, 1024.0, 48.0, 16.0, 1152.0, 896.0]]).repeat(2, 1)
    with torch.no_grad():
        ours = model(x, t, context, y)
        theirs = ref(
            x, t, encoder_hidden_states=context, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}
        ).sample
        other_size = model(x, t, context, sdxl_adm(pooled, 512, 512, 0, 0, 512, 512))
    assert y.shape == (2, 2816)
    assert rel_err(ours, theirs) <= 1e-4
    assert rel_err(other_size, ours) > 1e-3  # the size conditioning reaches the output


def test_sdxl_refiner_matches_diffusers_with_aesthetic_score():
    model = random_unet(tiny_config("sdxl_refiner"), seed=2)
    ref = diffusers_twin(model)
    x, t, context = inputs(model.config)
    pooled = torch.randn(2, 1280, generator=torch.Generator().manual_seed(6))
    y = sdxl_refiner_adm(pooled, width=1024, height=1024, crop_w=0, crop_h=8, aesthetic_score=2.5)
    time_ids = torch.tensor([[1024.0, 1024.0, 8.0, 0.0, 2.5]]).repeat(2, 1)
    with torch.no_grad():
        ours = model(x, t, context, y)
        theirs = ref(
            x, t, encoder_hidden_states=context, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}
        ).sample
    assert y.shape == (2, 2560)
    assert rel_err(ours, theirs) <= 1e-4


def test_timestep_embedding_is_diffusers_flip_sin_to_cos_without_shift():
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0.0, 1.0, 250.5, 999.0])
    ref = get_timestep_embedding(t, 320, flip_sin_to_cos=True, downscale_freq_shift=0)
    assert torch.allclose(timestep_embedding(t, 320), ref, atol=1e-6)
    assert torch.equal(timestep_embedding(t, 320)[0, :160], torch.ones(160))  # cos first


@pytest.mark.parametrize("family", FAMILIES)
def test_config_is_read_back_from_a_full_size_state_dict(family):
    with torch.device("meta"):
        model = UNetModel(full_config(family))
    assert config_from_state_dict(model.state_dict()) == full_config(family)


@pytest.mark.parametrize("family", FAMILIES)
def test_config_is_read_back_from_a_tiny_state_dict(family):
    model = UNetModel(tiny_config(family))
    assert config_from_state_dict(model.state_dict()) == tiny_config(family)


@pytest.mark.parametrize("family", FAMILIES)
def test_full_size_keys_and_shapes_are_what_diffusers_converts_from_a_real_checkpoint(family):
    with torch.device("meta"):
        model = UNetModel(full_config(family))
    diffusers_twin(model, device="meta")  # asserts converted names/shapes == diffusers' own model


def test_full_sd15_and_sdxl_have_the_published_parameter_counts():
    with torch.device("meta"):
        sd15, sdxl = UNetModel(full_config("sd1")), UNetModel(full_config("sdxl"))
    assert sum(p.numel() for p in sd15.parameters()) == 859_520_964
    assert sum(p.numel() for p in sdxl.parameters()) == 2_567_463_684


def test_bf16_forward_stays_close_to_fp32():
    model = random_unet(tiny_config("sdxl"), seed=4)
    x, t, context = inputs(model.config)
    y = sdxl_adm(torch.randn(2, 1280, generator=torch.Generator().manual_seed(7)), 1024, 1024)
    with torch.no_grad():
        ref = model(x, t, context, y)
        ours = model.to(torch.bfloat16)(x.bfloat16(), t, context.bfloat16(), y.bfloat16())
    assert ours.dtype == torch.bfloat16
    assert rel_err(ours.float(), ref) <= 2e-2


def test_fp32_inputs_run_a_bf16_model_and_come_back_fp32():
    model = random_unet(tiny_config("sd1")).to(torch.bfloat16)
    x, t, context = inputs(model.config)
    with torch.no_grad():
        out = model(x, t, context)
    assert out.dtype == torch.float32


def test_prefixed_state_dict_is_refused_with_a_hint():
    sd = {PREFIX + k: v for k, v in UNetModel(tiny_config("sd1")).state_dict().items()}
    with pytest.raises(ValueError, match="strip the prefix"):
        config_from_state_dict(sd)


def test_sdxl_without_y_says_what_is_missing():
    model = UNetModel(tiny_config("sdxl"))
    x, t, context = inputs(model.config)
    with pytest.raises(ValueError, match=r"needs y \[B, 2816\]"):
        model(x, t, context)


def test_state_dict_with_an_attention_layer_missing_names_the_block():
    sd = {k: v for k, v in UNetModel(tiny_config("sd1")).state_dict().items() if not k.startswith("output_blocks.3.1.")}
    with pytest.raises(ValueError, match=r"output_blocks\.3 has \(channels, transformer depth\) \(64, 0\)"):
        config_from_state_dict(sd)
