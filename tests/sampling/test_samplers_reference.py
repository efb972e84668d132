"""Each sampler computes what its reference computes on the same denoiser, sigmas and noise.

Reference: k-diffusion 0.1.1's sampling.py wherever it has the sampler (given the same noise
sampler, or its own BrownianTreeNoiseSampler with the same seed for the SDE samplers). Where it
has none — UniPC, LCM, DDPM, and ComfyUI's changes (ddim = Euler, LMS's last step) — the test
derives the expected values independently, as each docstring says.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nodes.sd import samplers as S
from nodes.sd.model_sampling import ModelSamplingDiscrete
from nodes.sd.noise import BrownianTreeNoiseSampler, default_noise_sampler
from nodes.sd.samplers_karras import lms_coefficient
from nodes.sd.schedulers import karras

from conftest import GaussianDenoiser
from numerics import rel_err


@pytest.fixture(scope="module")
def sigmas():
    return karras(ModelSamplingDiscrete(), 10)


@pytest.fixture()
def x_start(sigmas):
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 4, 6, 6, generator=g) * sigmas[0]


@pytest.fixture()
def denoiser():
    return GaussianDenoiser(mu=0.3, s=0.5, nonlinear=0.1)


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2", "dpmpp_2m"])
def test_ode_sampler_equals_k_diffusion(kdiff, name, denoiser, x_start, sigmas):
    ours = S.SAMPLER_FUNCTIONS[name](denoiser, x_start.clone(), sigmas)
    ref = getattr(kdiff, f"sample_{name}")(denoiser, x_start.clone(), sigmas, disable=True)
    assert rel_err(ours, ref) < 1e-5


def test_ddim_is_k_diffusion_euler(kdiff, denoiser, x_start, sigmas):
    """ComfyUI's "ddim" is Euler (it differs only in the noise it blends in when inpainting)."""
    ours = S.SAMPLER_FUNCTIONS["ddim"](denoiser, x_start.clone(), sigmas)
    assert rel_err(ours, kdiff.sample_euler(denoiser, x_start.clone(), sigmas, disable=True)) < 1e-5


def test_euler_with_churn_equals_k_diffusion_given_the_same_noise(kdiff, denoiser, x_start, sigmas):
    """k-diffusion draws churn noise from torch's global RNG; seeding it to match our noise sampler."""
    opts = dict(s_churn=2.0, s_tmin=0.1, s_tmax=5.0)
    ours = S.sample_euler(denoiser, x_start.clone(), sigmas, extra_args={"seed": 11}, **opts)
    draws = default_noise_sampler(x_start, seed=11)
    churned = [float(s) for s in sigmas[:-1] if 0.1 <= float(s) <= 5.0]
    noise = iter([draws(None, None) for _ in churned])
    x = x_start.clone()
    for i in range(len(sigmas) - 1):  # k-diffusion's Algorithm 2 with Euler steps, by hand
        sigma = sigmas[i]
        gamma = min(2.0 / 10, 2**0.5 - 1) if 0.1 <= float(sigma) <= 5.0 else 0.0
        sigma_hat = sigma * (gamma + 1)
        if gamma > 0:
            x = x + next(noise) * (sigma_hat**2 - sigma**2) ** 0.5
        d = (x - denoiser(x, sigma_hat.expand(2))) / sigma_hat
        x = x + d * (sigmas[i + 1] - sigma_hat)
    assert rel_err(ours, x) < 1e-5


def test_lms_equals_k_diffusion_until_the_last_step(kdiff, denoiser, x_start, sigmas):
    """LMS steps agree with k-diffusion; its step onto σ = 0 is ComfyUI's: x = D(x; σ_last)."""
    ours = S.sample_lms(denoiser, x_start.clone(), sigmas)
    ref = kdiff.sample_lms(denoiser, x_start.clone(), sigmas[:-1], disable=True)
    ref = denoiser(ref, sigmas[-2].expand(2))
    assert rel_err(ours, ref) < 1e-5


def test_lms_on_a_schedule_without_zero_equals_k_diffusion(kdiff, denoiser, x_start, sigmas):
    ours = S.sample_lms(denoiser, x_start.clone(), sigmas[:-1])
    assert rel_err(ours, kdiff.sample_lms(denoiser, x_start.clone(), sigmas[:-1], disable=True)) < 1e-5


def test_lms_coefficients_integrate_polynomials_exactly():
    t = np.array([5.0, 3.0, 2.0, 1.2, 0.7])
    # the weights of a 3-step rule reproduce ∫ p for any p of degree ≤ 2 from its values at t_i, t_{i-1}, t_{i-2}
    i, order = 3, 3
    p = np.polynomial.Polynomial([0.3, -1.1, 0.7])
    weights = [lms_coefficient(order, t, i, j) for j in range(order)]
    quadrature = sum(w * p(t[i - j]) for j, w in enumerate(weights))
    exact = p.integ()(t[i + 1]) - p.integ()(t[i])
    assert quadrature == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("name", ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral"])
@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_ancestral_sampler_equals_k_diffusion_given_the_same_noise(kdiff, name, eta, denoiser, x_start, sigmas):
    ours = S.SAMPLER_FUNCTIONS[name](denoiser, x_start.clone(), sigmas, extra_args={"seed": 5}, eta=eta)
    ref = getattr(kdiff, f"sample_{name}")(denoiser, x_start.clone(), sigmas, disable=True, eta=eta,
                                           noise_sampler=default_noise_sampler(x_start, seed=5))
    assert rel_err(ours, ref) < 1e-5


@pytest.mark.parametrize("name,opts", [
    ("dpmpp_sde", {}), ("dpmpp_sde", {"eta": 0.5, "r": 0.3}), ("dpmpp_2m_sde", {}),
    ("dpmpp_2m_sde", {"solver_type": "heun", "eta": 0.7}), ("dpmpp_3m_sde", {}), ("dpmpp_3m_sde", {"s_noise": 0.8}),
])
def test_sde_sampler_equals_k_diffusion_with_its_seeded_brownian_tree(kdiff, name, opts, denoiser, x_start, sigmas):
    """Our sampler seeds its own Brownian tree from extra_args["seed"] exactly like k-diffusion's."""
    ours = S.SAMPLER_FUNCTIONS[name](denoiser, x_start.clone(), sigmas, extra_args={"seed": 42}, **opts)
    tree = kdiff.BrownianTreeNoiseSampler(x_start, sigmas[sigmas > 0].min(), sigmas.max(), seed=42)
    ref = getattr(kdiff, f"sample_{name}")(denoiser, x_start.clone(), sigmas, disable=True, noise_sampler=tree, **opts)
    assert rel_err(ours, ref) < 1e-5


def test_brownian_increments_equal_k_diffusion(kdiff, sigmas):
    x = torch.zeros(3, 4, 5, 5)
    ours = BrownianTreeNoiseSampler(x, sigmas[-2], sigmas[0], seed=123)
    ref = kdiff.BrownianTreeNoiseSampler(x, sigmas[-2], sigmas[0], seed=123)
    for i in range(len(sigmas) - 2):
        assert torch.equal(ours(sigmas[i], sigmas[i + 1]), ref(sigmas[i], sigmas[i + 1]))


def test_ancestral_noise_is_seed_plus_one_on_cpu():
    x = torch.zeros(2, 4, 3, 3)
    draw = default_noise_sampler(x, seed=77)
    g = torch.Generator().manual_seed(78)
    assert torch.equal(draw(None, None), torch.randn(x.shape, generator=g))
    assert torch.equal(draw(None, None), torch.randn(x.shape, generator=g))


def test_ddpm_equals_euler_ancestral(denoiser, x_start, sigmas):
    """DDPM's posterior sampling (Ho et al.) and Euler ancestral with eta = 1 are the same update in σ space."""
    ddpm = S.sample_ddpm(denoiser, x_start.clone(), sigmas, extra_args={"seed": 3})
    ancestral = S.sample_euler_ancestral(denoiser, x_start.clone(), sigmas, extra_args={"seed": 3})
    assert rel_err(ddpm, ancestral) < 1e-5


def test_lcm_follows_its_defining_update(denoiser, x_start, sigmas):
    """x_{i+1} = D(x_i; σ_i) + σ_{i+1}·n_i with n_i the seeded ancestral noise, and x_N = D(x_{N-1}; σ_{N-1})."""
    ours = S.sample_lcm(denoiser, x_start.clone(), sigmas, extra_args={"seed": 9})
    g = torch.Generator().manual_seed(10)
    x = x_start.clone()
    for i in range(len(sigmas) - 1):
        x = denoiser(x, sigmas[i].expand(2))
        if sigmas[i + 1] > 0:
            x = x + torch.randn(x.shape, generator=g) * sigmas[i + 1]
    assert torch.equal(ours, x)


def test_callback_reports_every_step(denoiser, x_start, sigmas):
    seen = []
    S.sample_dpmpp_2m(denoiser, x_start, sigmas, callback=seen.append)
    assert [d["i"] for d in seen] == list(range(10))
    assert [float(d["sigma"]) for d in seen] == [float(s) for s in sigmas[:-1]]
    assert set(seen[0]) == {"x", "i", "sigma", "sigma_hat", "denoised"}


# -- UniPC: an independent transcription of Zhao et al. (2023) in VP space, numpy float64 -------------------
def _phi(k: int, h: float) -> float:
    """φ_k(h) = (e^h − Σ_{j<k} h^j/j!) / h^k."""
    return (math.exp(h) - sum(h**j / math.factorial(j) for j in range(k))) / h**k


def unipc_reference(data_pred, x_k: np.ndarray, sigmas: list[float], variant: str) -> np.ndarray:
    """UniPC-p multistep with UniC, data prediction, B(h) = h (bh1) or e^h − 1 (bh2), as run by ComfyUI:
    order min(3, N − 1), warm-up orders 1, 2, …, final orders lowered, no corrector on the last step, its
    model value reused as history, σ_N = 0 replaced by 0.001. VP variables: α = 1/√(1+σ²), s = σα, λ = log(α/s)."""
    sig = list(sigmas)
    if sig[-1] == 0:
        sig[-1] = 0.001
    alpha = [1 / math.sqrt(1 + s * s) for s in sig]
    std = [s * a for s, a in zip(sig, alpha)]
    lam = [math.log(a / s) for a, s in zip(alpha, std)]
    n = len(sig) - 1
    order = min(3, n - 1)
    x = x_k * alpha[0]
    hist = [0]                               # indices of the history points
    model = {0: data_pred(x / alpha[0], sig[0])}

    def step(x, j, p, correct):
        s0 = hist[-1]
        h = lam[j] - lam[s0]
        hh = -h                               # data prediction runs the exponential integrator in −λ
        r = [(lam[hist[-1 - m]] - lam[s0]) / h for m in range(1, p)]
        D = [(model[hist[-1 - m]] - model[s0]) / r[m - 1] for m in range(1, p)]
        B = hh if variant == "bh1" else math.expm1(hh)
        nodes = r + [1.0]
        R = np.array([[q ** (k - 1) for q in nodes] for k in range(1, p + 1)])
        g = np.array([math.factorial(k) * hh * _phi(k + 1, hh) / B for k in range(1, p + 1)])
        a_p = [0.5] if p == 2 else (list(np.linalg.solve(R[:-1, :-1], g[:-1])) if p > 1 else [])
        base = std[j] / std[s0] * x - alpha[j] * math.expm1(hh) * model[s0]
        x_pred = base - alpha[j] * B * sum(a * d for a, d in zip(a_p, D)) if D else base
        if not correct:
            return x_pred, None
        m_t = data_pred(x_pred / alpha[j], sig[j])
        a_c = [0.5] if p == 1 else list(np.linalg.solve(R, g))
        x_corr = base - alpha[j] * B * (sum(a * d for a, d in zip(a_c[:-1], D)) + a_c[-1] * (m_t - model[s0]))
        return x_corr, m_t

    for i in range(1, n):
        if i < order:
            x, m = step(x, i, i, True)
            hist.append(i)
            model[i] = m
        else:
            for j in ([i, i + 1] if i == n - 1 else [i]):
                last = j == n
                x, m = step(x, j, min(order, n + 1 - j), not last)
                if not last:
                    hist.append(j)
                    hist[:] = hist[-order:]
                    model[j] = m
    return x / alpha[-1]


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("steps", [2, 3, 4, 10])
def test_uni_pc_equals_independent_transcription(variant, steps):
    ms = ModelSamplingDiscrete()
    sigmas = karras(ms, steps).double()
    denoiser = GaussianDenoiser(mu=0.3, s=0.5, nonlinear=0.1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64) * sigmas[0]

    def data_pred(xk: np.ndarray, sigma: float) -> np.ndarray:
        return denoiser(torch.from_numpy(xk), torch.tensor([sigma, sigma], dtype=torch.float64)).numpy()

    ours = S.SAMPLER_FUNCTIONS["uni_pc" if variant == "bh1" else "uni_pc_bh2"](denoiser, x.clone(), sigmas)
    ref = unipc_reference(data_pred, x.numpy(), [float(s) for s in sigmas], variant)
    assert rel_err(ours, torch.from_numpy(ref)) < 1e-9


def test_uni_pc_makes_one_model_call_per_step(x_start, sigmas):
    denoiser = GaussianDenoiser()
    S.sample_uni_pc(denoiser, x_start, sigmas)
    assert denoiser.calls == len(sigmas) - 1


def test_uni_pc_does_not_modify_the_callers_sigmas(x_start, sigmas):
    before = sigmas.clone()
    S.sample_uni_pc(GaussianDenoiser(), x_start, sigmas)
    assert torch.equal(sigmas, before)


def test_single_step_uni_pc_rescales_like_comfyui(x_start):
    """With one step UniPC makes no update; ComfyUI's VP bookkeeping then returns x·α(σ_0)/α(0.001)."""
    sigmas = torch.tensor([14.6, 0.0])
    out = S.sample_uni_pc(GaussianDenoiser(), x_start.clone(), sigmas)
    expected = x_start * math.sqrt((1 + 0.001**2) / (1 + 14.6**2))
    assert torch.allclose(out, expected, rtol=1e-6)


def test_sampler_object_passes_its_options(denoiser, x_start, sigmas):
    sampler = S.Sampler("euler_ancestral", {"eta": 0.0})
    assert torch.allclose(sampler(denoiser, x_start.clone(), sigmas), S.sample_euler(denoiser, x_start.clone(), sigmas))


def test_unknown_sampler_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown sampler 'dpmpp_9m'.*euler"):
        S.Sampler("dpmpp_9m")


# -- DPM-Solver fast/adaptive: k-diffusion's, called as ComfyUI calls them ------------------------------
def comfyui_ends(sigmas):
    """ComfyUI hands k-diffusion the first sigma and the last non-zero one."""
    return float(sigmas[-1] if sigmas[-1] > 0 else sigmas[-2]), float(sigmas[0])


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_dpm_fast_equals_k_diffusion(kdiff, eta, denoiser, x_start, sigmas):
    ours = S.SAMPLER_FUNCTIONS["dpm_fast"](denoiser, x_start.clone(), sigmas, extra_args={"seed": 4}, eta=eta)
    sigma_min, sigma_max = comfyui_ends(sigmas)
    ref = kdiff.sample_dpm_fast(denoiser, x_start.clone(), sigma_min, sigma_max, len(sigmas) - 1, disable=True,
                                eta=eta, noise_sampler=default_noise_sampler(x_start, seed=4))
    assert rel_err(ours, ref) < 1e-5


@pytest.mark.parametrize("options", [{}, {"order": 2, "rtol": 0.01}, {"eta": 0.5}, {"pcoeff": 0.2, "dcoeff": 0.1}])
def test_dpm_adaptive_equals_k_diffusion(kdiff, options, denoiser, x_start, sigmas):
    ours = S.SAMPLER_FUNCTIONS["dpm_adaptive"](denoiser, x_start.clone(), sigmas, extra_args={"seed": 4}, **options)
    sigma_min, sigma_max = comfyui_ends(sigmas)
    ref = kdiff.sample_dpm_adaptive(denoiser, x_start.clone(), sigma_min, sigma_max, disable=True,
                                    noise_sampler=default_noise_sampler(x_start, seed=4), **options)
    assert rel_err(ours, ref) < 1e-5


def test_dpm_adaptive_integrates_a_flipped_schedule_backwards(kdiff, denoiser, sigmas):
    """A rising schedule (FlipSigmas) runs the ODE from low to high noise, as k-diffusion does."""
    rising = torch.flip(sigmas, (0,)).clone()
    rising[0] = 0.0001
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(3)) * 0.5
    ours = S.SAMPLER_FUNCTIONS["dpm_adaptive"](denoiser, x.clone(), rising)
    ref = kdiff.sample_dpm_adaptive(denoiser, x.clone(), float(rising[-1]), float(rising[0]), disable=True)
    assert rel_err(ours, ref) < 1e-5
