"""Schedulers give the same sigmas as independent references.

karras / exponential: k-diffusion's get_sigmas_karras / get_sigmas_exponential and diffusers'
EulerDiscreteScheduler conversions. ComfyUI's own schedules (normal, sgm_uniform, simple,
ddim_uniform, beta, linear_quadratic, kl_optimal): golden/comfyui_schedules.json, computed by golden/make_comfyui_schedules.py
(numpy + scipy transcription of ComfyUI's formulas; provenance inside the file).
"""
from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
import torch

from nodes.sd import schedulers as S
from nodes.sd.model_sampling import ModelSamplingDiscrete

STEPS = [1, 2, 10, 20, 50]
GOLDEN = json.loads((pathlib.Path(__file__).parent / "golden" / "comfyui_schedules.json").read_text())


@pytest.fixture(scope="module")
def ms():
    return ModelSamplingDiscrete()


def assert_sigmas_equal(ours: torch.Tensor, reference, rtol=1e-6, atol=1e-7):
    reference = np.asarray(reference, dtype=np.float64)
    assert ours.shape == reference.shape, f"{tuple(ours.shape)} sigmas, reference has {reference.shape}"
    np.testing.assert_allclose(ours.double().numpy(), reference, rtol=rtol, atol=atol)


@pytest.mark.parametrize("steps", STEPS)
def test_karras_equals_k_diffusion(ms, kdiff, steps):
    ref = kdiff.get_sigmas_karras(steps, float(ms.sigma_min), float(ms.sigma_max), rho=7.0)
    assert_sigmas_equal(S.karras(ms, steps), ref)


@pytest.mark.parametrize("steps", STEPS)
def test_karras_equals_diffusers(ms, steps):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.EulerDiscreteScheduler()
    ref = sched._convert_to_karras(in_sigmas=torch.tensor([float(ms.sigma_max), float(ms.sigma_min)]),
                                   num_inference_steps=steps)
    assert_sigmas_equal(S.karras(ms, steps), list(np.asarray(ref)) + [0.0])


@pytest.mark.parametrize("steps", STEPS)
def test_exponential_equals_k_diffusion(ms, kdiff, steps):
    ref = kdiff.get_sigmas_exponential(steps, float(ms.sigma_min), float(ms.sigma_max))
    assert_sigmas_equal(S.exponential(ms, steps), ref)


@pytest.mark.parametrize("steps", STEPS)
def test_exponential_equals_diffusers(ms, steps):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.EulerDiscreteScheduler()
    ref = sched._convert_to_exponential(in_sigmas=torch.tensor([float(ms.sigma_max), float(ms.sigma_min)]),
                                        num_inference_steps=steps)
    assert_sigmas_equal(S.exponential(ms, steps), list(np.asarray(ref)) + [0.0])


@pytest.mark.parametrize("name", ["normal", "sgm_uniform", "simple", "ddim_uniform", "beta", "linear_quadratic",
                                  "kl_optimal"])
@pytest.mark.parametrize("steps", STEPS + [3, 7])
def test_comfyui_schedules_equal_golden_table(ms, name, steps):
    assert_sigmas_equal(S.calculate_sigmas(ms, name, steps), GOLDEN["schedules"][name][str(steps)])


def test_golden_table_was_made_for_this_sigma_range(ms):
    assert GOLDEN["sigma_min"] == pytest.approx(float(ms.sigma_min), rel=1e-7)
    assert GOLDEN["sigma_max"] == pytest.approx(float(ms.sigma_max), rel=1e-7)
    assert "make_comfyui_schedules.py" in GOLDEN["provenance"]


@pytest.mark.parametrize("name", S.SCHEDULER_NAMES)
def test_every_schedule_decreases_to_zero(ms, name):
    sigmas = S.calculate_sigmas(ms, name, 13)
    assert sigmas.dtype == torch.float32
    assert float(sigmas[-1]) == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    if name != "ddim_uniform":  # ddim_uniform can give more (see its docstring)
        assert len(sigmas) == 14


def test_ddim_uniform_gives_extra_sigma_when_steps_do_not_divide_1000(ms):
    assert len(S.ddim_uniform(ms, 7)) == 9  # timesteps 1, 143, …, 995: eight, plus the final 0


@pytest.mark.parametrize("a,b,ppf", [
    (1.0, 1.0, lambda p: p),                                   # uniform
    (2.0, 1.0, lambda p: math.sqrt(p)),                        # CDF x²
    (1.0, 3.0, lambda p: 1 - (1 - p) ** (1 / 3)),              # CDF 1 − (1 − x)³
    (0.5, 0.5, lambda p: math.sin(math.pi * p / 2) ** 2),      # arcsine distribution
])
def test_beta_quantile_matches_closed_forms(a, b, ppf):
    for p in [1e-6, 0.01, 0.2, 0.5, 0.77, 0.999]:
        assert S.beta_ppf(p, a, b) == pytest.approx(ppf(p), rel=1e-12, abs=1e-15)


def test_beta_quantile_is_symmetric_for_equal_parameters():
    assert S.beta_ppf(0.5, 0.6, 0.6) == 0.5
    assert S.beta_ppf(0.9, 0.6, 0.6) == pytest.approx(1 - S.beta_ppf(0.1, 0.6, 0.6), abs=1e-15)


def test_basic_scheduler_takes_the_tail_of_a_longer_schedule(ms):
    full = S.calculate_sigmas(ms, "karras", int(10 / 0.6))
    assert torch.equal(S.basic_scheduler(ms, "karras", 10, denoise=0.6), full[-11:])
    assert torch.equal(S.basic_scheduler(ms, "karras", 10), S.calculate_sigmas(ms, "karras", 10))
    assert S.basic_scheduler(ms, "karras", 10, denoise=0.0).numel() == 0


def test_unknown_scheduler_names_the_choices(ms):
    with pytest.raises(ValueError, match=r"unknown scheduler 'linear'.*karras"):
        S.calculate_sigmas(ms, "linear", 10)


def test_zero_steps_is_rejected(ms):
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        S.karras(ms, 0)
