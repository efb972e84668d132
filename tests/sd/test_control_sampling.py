"""Controls while sampling: residuals land where diffusers' U-Net adds them, the σ window, chaining,
hint resizing, the uncond rule of ControlNetApply, and a ControlNet of another family.

Tolerance: as tests/sd/test_unet.py, our U-Net against diffusers' on the same weights is held to
1e-4 relative error over the output (float32, different accumulation orders in 20+ layers).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_controlnet import diffusers_controlnet, diffusers_adapter
from test_unet import diffusers_twin, random_unet, rel_err

from nodes.sd.control import Control, ControlError, ControlModel
from nodes.sd.control.cldm import ControlNetConfig
from nodes.sd.control.testing import adapter_config_for, random_adapter, random_controlnet
from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.guidance import CFGGuider, calc_cond_batch, parse_conditioning, resolve_entries
from nodes.sd.resize import common_upscale
from nodes.sd.unet import tiny_config

PATH = Path("cn.safetensors")


def setup(family: str = "sd1", seed: int = 50):
    unet = random_unet(tiny_config(family), seed=seed)
    net = random_controlnet(ControlNetConfig(unet.config), seed=seed + 1)
    return unet, net


def model_inputs(cfg, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 4, 8, 8, generator=g), torch.rand(1, 64, 64, 3, generator=g),
            torch.randn(1, 7, cfg.context_dim, generator=g))


@torch.no_grad()
def test_controlnet_residuals_land_where_diffusers_unet_adds_them():
    """Ours: DiffusionModel.apply_model with our ControlNet's residuals. Reference: diffusers' U-Net
    with diffusers' ControlNetModel's down/mid residuals, at the same scaled input and timestep."""
    unet, net = setup()
    model = DiffusionModel.for_family(unet, "sd1")
    x, image, context = model_inputs(unet.config, 52)
    sigma = torch.tensor([3.0])
    control = Control(ControlModel(PATH, "controlnet", net), image.movedim(-1, 1), 0.7)
    ours = model.apply_model(x, sigma, context, control=control.residuals(model, x, sigma, context, None, 1))
    ms = model.model_sampling
    x_in, t = ms.calculate_input(sigma, x), ms.timestep(sigma).float()
    down, mid = diffusers_controlnet(net)(x_in, t, encoder_hidden_states=context, controlnet_cond=image.movedim(-1, 1),
                                          conditioning_scale=0.7, return_dict=False)
    eps = diffusers_twin(unet)(x_in, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                               mid_block_additional_residual=mid).sample
    expected = ms.calculate_denoised(sigma, eps, x)
    assert rel_err(ours, expected) <= 1e-4
    assert rel_err(model.apply_model(x, sigma, context), expected) > 1e-3  # the control changed the output


@pytest.mark.parametrize("kind, family", [("full", "sd1"), ("full_xl", "sdxl")])
@torch.no_grad()
def test_t2i_features_land_where_diffusers_unet_adds_them(kind, family):
    unet = random_unet(tiny_config(family), seed=53)
    adapter = random_adapter(adapter_config_for(unet.config, kind), seed=54)
    model = DiffusionModel.for_family(unet, family)
    x, image, context = model_inputs(unet.config, 55)
    sigma = torch.tensor([2.0])
    ms = model.model_sampling
    x_in, t = ms.calculate_input(sigma, x), ms.timestep(sigma).float()
    kwargs, y = {}, None
    if unet.config.adm_in_channels:  # diffusers embeds the sizes itself from time_ids
        from nodes.sd.unet import sdxl_adm

        pooled = torch.randn(1, unet.config.adm_in_channels - 6 * 256, generator=torch.Generator().manual_seed(56))
        y = sdxl_adm(pooled, width=64, height=64)
        kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    control = Control(ControlModel(PATH, "t2i", adapter), image.movedim(-1, 1), 0.5)
    ours = model.apply_model(x, sigma, context, y, control=control.residuals(model, x, sigma, context, y, 1))
    features = [f * 0.5 for f in diffusers_adapter(adapter, kind)[0](image.movedim(-1, 1))]
    eps = diffusers_twin(unet)(x_in, t, encoder_hidden_states=context, down_intrablock_additional_residuals=features,
                               **kwargs).sample
    assert rel_err(ours, ms.calculate_denoised(sigma, eps, x)) <= 1e-4
    assert rel_err(ours, model.apply_model(x, sigma, context, y)) > 1e-3


def guided(unet, controls: list[Control | None], x, sigma, context):
    model = DiffusionModel.for_family(unet, "sd1")
    cond = [[context, {} if c is None else {"control": c}] for c in controls]
    entries = resolve_entries(parse_conditioning(cond, "positive"), model, x.shape, x.device, "positive")
    return calc_cond_batch(model, [entries], x, sigma)[0], model


@torch.no_grad()
def test_a_chain_of_controls_adds_their_residuals():
    unet, net = setup(seed=56)
    other = random_controlnet(ControlNetConfig(unet.config), seed=57)
    x, image, context = model_inputs(unet.config, 58)
    hint = image.movedim(-1, 1)
    first = Control(ControlModel(PATH, "controlnet", net), hint, 0.8)
    chained = Control(ControlModel(PATH, "controlnet", other), hint.flip(-1), 0.3, previous=first)
    sigma = torch.tensor([1.5])
    out, model = guided(unet, [chained], x, sigma, context)
    a = first.residuals(model, x, sigma, context, None, 1)
    b = Control(chained.model, chained.hint, 0.3).residuals(model, x, sigma, context, None, 1)
    summed = {k: [p + q for p, q in zip(a[k], b[k])] for k in a}
    torch.testing.assert_close(out, model.apply_model(x, sigma, context, control=summed), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sigma, active", [(14.0, False), (3.0, True), (0.05, False)])
@torch.no_grad()
def test_the_percent_window_is_a_sigma_window(sigma, active):
    unet, net = setup(seed=59)
    x, image, context = model_inputs(unet.config, 60)
    control = Control(ControlModel(PATH, "controlnet", net), image.movedim(-1, 1), 1.0, (0.2, 0.8))
    s = torch.tensor([sigma])
    out, model = guided(unet, [control], x, s, context)
    ms = model.model_sampling
    assert (float(ms.percent_to_sigma(0.8)) <= sigma <= float(ms.percent_to_sigma(0.2))) == active
    plain = model.apply_model(x, s, context)
    assert (rel_err(out, plain) > 1e-4) == active


@torch.no_grad()
def test_the_hint_is_resized_to_8x_the_latent_like_comfyui():
    unet, net = setup(seed=61)
    x, _, context = model_inputs(unet.config, 62)
    odd = torch.rand(1, 3, 40, 100, generator=torch.Generator().manual_seed(63))
    control = Control(ControlModel(PATH, "controlnet", net), odd, 1.0)
    model = DiffusionModel.for_family(unet, "sd1")
    s = torch.tensor([2.0])
    got = control.residuals(model, x, s, context, None, 1)
    hint = common_upscale(odd, 64, 64, "nearest-exact", "center")
    ms = model.model_sampling
    want = net(ms.calculate_input(s, x), hint, ms.timestep(s).float(), context)
    for a, b in zip(got["output"], want["output"]):
        torch.testing.assert_close(a, b)


@torch.no_grad()
def test_controlnet_apply_old_also_steers_the_negative_prompt():
    from nodes.controlnet import controlnet_apply

    unet, net = setup(seed=64)
    x, image, context = model_inputs(unet.config, 65)
    cm = ControlModel(PATH, "controlnet", net)
    positive = controlnet_apply([[context, {}]], cm, image, 1.0)
    guider = CFGGuider(DiffusionModel.for_family(unet, "sd1"), positive, [[context * 0, {}]], cfg=7.0)
    guider.prepare(x.shape, x.device)
    assert guider.conds["negative"][0].control is guider.conds["positive"][0].control is not None


def test_a_controlnet_of_another_family_names_both():
    unet, _ = setup("sd1", seed=66)
    sdxl_net = random_controlnet(ControlNetConfig(tiny_config("sdxl")), seed=67)
    control = Control(ControlModel(Path("canny_xl.safetensors"), "controlnet", sdxl_net),
                      torch.rand(1, 3, 64, 64))
    with pytest.raises(ControlError, match=r"canny_xl\.safetensors: a SDXL ControlNet, but the model is SD1\.x"):
        guided(unet, [control], *model_inputs(unet.config, 68)[:1], torch.tensor([1.0]),
               model_inputs(unet.config, 68)[2])


def test_a_batch_of_hints_is_cycled_within_each_conditioning_chunk_as_comfyui():
    from nodes.sd.control.runtime import broadcast_hint

    hints = torch.arange(3.0).reshape(3, 1, 1, 1)
    # 2 chunks (cond, uncond) of 2 latents each: each chunk takes the first 2 hints
    assert broadcast_hint(hints, 4, 2).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    # 2 chunks of 5: the hints repeat to fill a chunk
    assert broadcast_hint(hints, 10, 2).flatten().tolist() == [0.0, 1.0, 2.0, 0.0, 1.0] * 2
    assert broadcast_hint(hints[:1], 6, 3).shape[0] == 6
