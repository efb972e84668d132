"""Model-sampling patches: zero-terminal-SNR rescaling (against diffusers), LCM's distilled schedule and
boundary conditions (against diffusers' LCMScheduler), x0 / img_to_img / EDM / cosmos_rflow outputs, the
continuous log-linear schedule and Playground v2.5's latent format — and the nodes that choose them."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from patchkit import latent, tiny_model

from nodegraph import NodeError
from nodes.model_patches import model_sampling_continuous_edm, model_sampling_discrete
from nodes.sd.model_sampling import (ModelSamplingContinuousEDM, ModelSamplingCosmosRFlow, ModelSamplingDiscrete,
                                     ModelSamplingDiscreteDistilled)
from nodes.sd.sampling_patches import PlaygroundLatentFormat

X, OUT = latent(1, (2, 4, 3, 3)), latent(2, (2, 4, 3, 3))
SIGMAS = torch.tensor([0.5, 7.0])


def test_zsnr_schedule_is_diffusers_rescale_zero_terminal_snr():
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - rescale_zero_terminal_snr(betas), dim=0)
    expected = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    ms = ModelSamplingDiscrete("v", zsnr=True)
    np.testing.assert_allclose(ms.sigmas[:-1].numpy(), expected[:-1].numpy(), rtol=1e-5)
    # diffusers' last σ is infinite (ᾱ = 0); ComfyUI keeps ᾱ = 4.8973451890853435e-08 there
    assert math.isinf(float(expected[-1]))
    assert float(ms.sigma_max) == pytest.approx(math.sqrt((1 - 4.8973451890853435e-08) / 4.8973451890853435e-08), rel=1e-6)
    assert float(ms.sigma_min) == pytest.approx(float(ModelSamplingDiscrete().sigma_min), rel=1e-5)


def test_lcm_samples_the_fifty_distilled_timesteps():
    ms = ModelSamplingDiscreteDistilled("lcm")
    full = ModelSamplingDiscrete()
    picked = torch.arange(19, 1000, 20)
    assert len(ms.sigmas) == 50 and torch.equal(ms.sigmas, full.sigmas[picked])
    assert torch.equal(ms.timestep(ms.sigmas), picked)
    torch.testing.assert_close(ms.sigma(picked.float()), ms.sigmas, rtol=1e-6, atol=0)


def test_lcm_denoised_uses_diffusers_boundary_condition_scalings():
    from diffusers import LCMScheduler

    scheduler = LCMScheduler(timestep_scaling=10.0)
    ms = ModelSamplingDiscreteDistilled("lcm")
    got = ms.calculate_denoised(SIGMAS, OUT, X)
    for b, t in enumerate(ms.timestep(SIGMAS).tolist()):
        c_skip, c_out = scheduler.get_scalings_for_boundary_condition_discrete(torch.tensor(float(t)))
        expected = c_out * (X[b] - OUT[b] * SIGMAS[b]) + c_skip * X[b]
        torch.testing.assert_close(got[b], expected, rtol=1e-6, atol=1e-6)


def test_x0_and_img_to_img_predict_the_clean_latent_itself():
    for kind in ("x0", "img_to_img"):
        assert torch.equal(ModelSamplingDiscrete(kind).calculate_denoised(SIGMAS, OUT, X), OUT)
    assert torch.equal(ModelSamplingDiscrete("img_to_img").calculate_input(SIGMAS, X), X)
    torch.testing.assert_close(ModelSamplingDiscrete("x0").calculate_input(SIGMAS, X),
                               X / (SIGMAS.view(-1, 1, 1, 1) ** 2 + 1).sqrt())


def test_edm_preconditioning_with_sigma_data_one_half():
    ms = ModelSamplingContinuousEDM("edm", 0.002, 120.0, 0.5)
    s = SIGMAS.view(-1, 1, 1, 1)
    c_skip, c_out, c_in = 0.25 / (s**2 + 0.25), s * 0.5 / (s**2 + 0.25).sqrt(), 1 / (s**2 + 0.25).sqrt()
    torch.testing.assert_close(ms.calculate_denoised(SIGMAS, OUT, X), c_skip * X + c_out * OUT)
    torch.testing.assert_close(ms.calculate_input(SIGMAS, X), c_in * X)


def test_the_continuous_schedule_is_log_linear_with_quarter_log_sigma_timesteps():
    ms = ModelSamplingContinuousEDM("v", 0.03, 500.0)
    expected = np.exp(np.linspace(math.log(0.03), math.log(500.0), 1000))
    np.testing.assert_allclose(ms.sigmas.numpy(), expected, rtol=1e-5)
    torch.testing.assert_close(ms.timestep(SIGMAS), 0.25 * SIGMAS.log())
    torch.testing.assert_close(ms.sigma(ms.timestep(SIGMAS)), SIGMAS)
    assert ms.percent_to_sigma(0.5) == pytest.approx(math.sqrt(0.03 * 500.0), rel=1e-5)
    assert ms.percent_to_sigma(0.0) > 1e8 and ms.percent_to_sigma(1.0) == 0.0


def test_cosmos_rflow_works_in_flow_time():
    ms = ModelSamplingCosmosRFlow(0.002, 80.0)
    t = (SIGMAS / (SIGMAS + 1)).view(-1, 1, 1, 1)
    torch.testing.assert_close(ms.timestep(SIGMAS), SIGMAS / (SIGMAS + 1))
    torch.testing.assert_close(ms.calculate_input(SIGMAS, X), X * (1 - t))
    torch.testing.assert_close(ms.calculate_denoised(SIGMAS, OUT, X), X * (1 - t) - OUT * t)
    start = ms.noise_scaling(torch.tensor([80.0]), OUT[:1], X[:1], max_denoise=True)
    torch.testing.assert_close(start, X[:1] + 80.0 * OUT[:1])  # no √(1+σ²) for a full denoise


def test_playground_latent_format_normalises_each_channel():
    fmt, raw = PlaygroundLatentFormat(), latent(3, (1, 4, 2, 2)) * 5
    mean = torch.tensor([-1.6574, 1.886, -1.383, 2.5155]).view(1, 4, 1, 1)
    std = torch.tensor([8.4927, 5.9022, 6.5498, 5.2299]).view(1, 4, 1, 1)
    torch.testing.assert_close(fmt.process_in(raw), (raw - mean) * 0.5 / std)
    torch.testing.assert_close(fmt.process_out(fmt.process_in(raw)), raw)


# -- the nodes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampling, kind, prediction", [("eps", ModelSamplingDiscrete, "eps"),
                                                         ("v_prediction", ModelSamplingDiscrete, "v"),
                                                         ("lcm", ModelSamplingDiscreteDistilled, "lcm"),
                                                         ("x0", ModelSamplingDiscrete, "x0"),
                                                         ("img_to_img", ModelSamplingDiscrete, "img_to_img")])
def test_model_sampling_discrete_node_replaces_only_the_schedule(sampling, kind, prediction):
    model = tiny_model()
    patched = model_sampling_discrete(model, sampling, zsnr=True)
    assert type(patched.model_sampling) is kind and patched.model_sampling.prediction == prediction
    assert patched.model_sampling.zsnr and patched.unet is model.unet
    assert type(model.model_sampling) is ModelSamplingDiscrete and model.model_sampling.prediction == "eps"


def test_model_sampling_continuous_edm_node_sets_sigma_data_and_the_playground_format():
    model = tiny_model()
    edm = model_sampling_continuous_edm(model, "edm", 80.0, 0.002)
    assert edm.model_sampling.sigma_data == 0.5 and edm.latent_format is None
    assert float(edm.model_sampling.sigma_max) == pytest.approx(80.0, rel=1e-5)
    playground = model_sampling_continuous_edm(model, "edm_playground_v2.5", 80.0, 0.002)
    raw = latent(3, (1, 4, 2, 2))
    torch.testing.assert_close(playground.process_in(raw), PlaygroundLatentFormat().process_in(raw))
    assert model.process_in(raw).equal(raw * model.latent_scale)
    assert model_sampling_continuous_edm(model, "v_prediction", 80.0, 0.002).model_sampling.sigma_data == 1.0


def test_model_sampling_continuous_edm_refuses_an_empty_range():
    with pytest.raises(NodeError, match="sigma_min < sigma_max"):
        model_sampling_continuous_edm(tiny_model(), "edm", 1.0, 2.0)
    with pytest.raises(NodeError, match="0 < sigma_min"):
        model_sampling_continuous_edm(tiny_model(), "edm", 1.0, 0.0)
