"""DiffusionModel: sigma-space latent in, denoised out, through any module with LDM's U-Net signature."""
from __future__ import annotations

import math

import pytest
import torch

from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.model_sampling import ModelSamplingDiscrete

from conftest import ToyUNet


def make(prediction="eps", dtype=torch.float32, adm_fn=None, adm_channels=0):
    unet = ToyUNet(adm_channels=adm_channels).to(dtype)
    return DiffusionModel(unet, ModelSamplingDiscrete(prediction), "sd1", 0.18215, adm_fn=adm_fn)


def test_apply_model_feeds_the_unet_scaled_input_and_nearest_timestep():
    model = make()
    x = torch.randn(2, 4, 4, 4)
    sigma = torch.tensor([model.model_sampling.sigmas[10].item(), 3.0])
    context = torch.randn(2, 5, 8)
    denoised = model.apply_model(x, sigma, context)
    call = model.unet.calls[-1]
    assert call["timesteps"].tolist() == [10.0, float(model.model_sampling.timestep(torch.tensor(3.0)))]
    x_in = x / (sigma.view(-1, 1, 1, 1) ** 2 + 1) ** 0.5
    eps = model.unet(x_in, call["timesteps"], context=context)
    assert torch.allclose(denoised, x - eps * sigma.view(-1, 1, 1, 1), atol=1e-6)


def test_v_prediction_model_converts_v_to_denoised():
    model = make("v")
    x, sigma, context = torch.randn(1, 4, 4, 4), torch.tensor([2.0]), torch.randn(1, 3, 8)
    t = model.model_sampling.timestep(sigma).float()
    v = model.unet(x / math.sqrt(5.0), t, context=context)
    expected = x / 5.0 - v * 2.0 / math.sqrt(5.0)
    assert torch.allclose(model.apply_model(x, sigma, context), expected, atol=1e-6)


def test_unet_runs_in_its_own_dtype_and_result_is_float32():
    model = make(dtype=torch.bfloat16)
    out = model.apply_model(torch.randn(1, 4, 4, 4), torch.tensor([1.0]), torch.randn(1, 3, 8))
    assert model.unet.calls[-1]["dtype"] == torch.bfloat16
    assert out.dtype == torch.float32
    assert model.dtype == torch.bfloat16


def test_y_is_passed_only_when_given():
    model = make(adm_channels=6)
    model.apply_model(torch.randn(1, 4, 4, 4), torch.tensor([1.0]), torch.randn(1, 3, 8))
    assert model.unet.calls[-1]["y"] is False
    model.apply_model(torch.randn(1, 4, 4, 4), torch.tensor([1.0]), torch.randn(1, 3, 8), y=torch.randn(1, 6))
    assert model.unet.calls[-1]["y"] is True


def test_scalar_sigma_is_broadcast_over_the_batch():
    model = make()
    x, context = torch.randn(3, 4, 4, 4), torch.randn(3, 2, 8)
    assert torch.equal(model.apply_model(x, torch.tensor(1.5), context),
                       model.apply_model(x, torch.tensor([1.5, 1.5, 1.5]), context))


def test_process_in_and_out_apply_the_latent_scale():
    model = make()
    latent = torch.full((1, 4, 2, 2), 2.0)
    assert torch.allclose(model.process_in(latent), latent * 0.18215)
    assert torch.allclose(model.process_out(model.process_in(latent)), latent)


def test_encode_adm_delegates_to_adm_fn():
    seen = {}

    def adm_fn(cond, batch, device, dtype):
        seen.update(cond=cond, batch=batch, device=device, dtype=dtype)
        return torch.ones(batch, 6)

    model = make(adm_fn=adm_fn, adm_channels=6)
    y = model.encode_adm({"width": 512}, 2, "cpu", torch.float32)
    assert y.shape == (2, 6) and seen["cond"] == {"width": 512} and seen["batch"] == 2
    assert make().encode_adm({}, 1, "cpu", torch.float32) is None


def test_encode_adm_rejects_a_badly_shaped_result():
    model = make(adm_fn=lambda cond, batch, device, dtype: torch.ones(6))
    with pytest.raises(ValueError, match=r"adm_fn must return \[batch, channels\]"):
        model.encode_adm({}, 1, "cpu", torch.float32)


def test_unknown_family_is_rejected():
    with pytest.raises(ValueError, match="family must be one of"):
        DiffusionModel(ToyUNet(), ModelSamplingDiscrete(), "sd3", 1.0)
