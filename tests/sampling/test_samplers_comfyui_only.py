"""Samplers that k-diffusion 0.1.1 lacks, against two references.

1. golden/comfyui_samplers.json: a numpy transcription of ComfyUI's own rules (provenance in the
   file and in golden/make_comfyui_samplers.py), run on the same problem with the same noise draws.
2. Step-by-step transcriptions of the papers' update rules, written here (numpy, float64), and the
   identities the papers state (CFG++ at guidance 1 is the base sampler, SEEDS-2 at η = 0 is
   DPM-Solver++(2S), an ODE noise scale makes ER-SDE deterministic, …).

Tolerances: both sides run in float64 on the same inputs, so agreement is to ~1e-12 relative except
where a rule integrates numerically in different ways (said at the test).
"""
from __future__ import annotations

import inspect
import json
import math
import pathlib

import numpy as np
import pytest
import torch

from nodes.sd import samplers as S
from nodes.sd.patches import GuidanceStep
from nodes.sd.samplers_karras import IPNDM_WEIGHTS, deis_coefficients, ipndm_v_weights
from nodes.sd.samplers_sde import ERSDEScaler, SATau, sa_solver_coefficients

GOLDEN = json.loads((pathlib.Path(__file__).parent / "golden" / "comfyui_samplers.json").read_text())
SIGMAS = torch.tensor(GOLDEN["sigmas"], dtype=torch.float64)
X0 = torch.tensor(GOLDEN["x0"], dtype=torch.float64)


def toy(mu: float):
    def d(x, sigma):
        sigma = sigma.view(-1, *([1] * (x.ndim - 1))) if sigma.ndim else sigma
        return mu + 0.25 / (0.25 + sigma**2) * (x - mu) + 0.1 * torch.tanh(x) * sigma / (1 + sigma)
    return d


class Guided:
    """The golden problem's guided denoiser: D = U + cfg·(C − U); runs a sampler's post-CFG hooks (how
    CFG++ samplers read U) like the guiders do."""

    def __init__(self, cfg: float = GOLDEN["cfg"], cond_mu: float = 0.3, uncond_mu: float = -0.2):
        self.cfg, self.cond, self.uncond = cfg, toy(cond_mu), toy(uncond_mu)
        self.calls = 0

    def __call__(self, x, sigma, patches=None, **_):
        self.calls += 1
        u, c = self.uncond(x, sigma), self.cond(x, sigma)
        d = u + self.cfg * (c - u)
        for hook in patches.post_cfg if patches is not None else ():
            d = hook(GuidanceStep(None, x, sigma, self.cfg, [], cond_denoised=c, uncond_denoised=u, denoised=d))
        return d


class Draws:
    """The golden noise: standard-normal draws of numpy's PCG64(seed) in call order, as a noise sampler."""

    def __init__(self, shape, seed=GOLDEN["noise_seed"]):
        self.rng, self.shape = np.random.Generator(np.random.PCG64(seed)), shape

    def __call__(self, *_):
        return torch.from_numpy(self.rng.standard_normal(self.shape))


def run(name, model=None, sigmas=SIGMAS, x=X0, **options):
    function = S.SAMPLER_FUNCTIONS.get(name) or S.NODE_SAMPLER_FUNCTIONS[name]
    if "noise_sampler" not in inspect.signature(function).parameters:
        options.pop("noise_sampler", None)  # a deterministic rule
    return function(model or Guided(), x.clone().unsqueeze(0), sigmas, extra_args={"seed": 0}, **options)[0]


GOLDEN_CASES = {
    "euler_cfg_pp": ("euler_cfg_pp", {}), "euler_ancestral_cfg_pp": ("euler_ancestral_cfg_pp", {}),
    "euler_cfg_pp_alternative": ("euler_cfg_pp_alternative", {}), "heunpp2": ("heunpp2", {}),
    "exp_heun_2_x0": ("exp_heun_2_x0", {}), "exp_heun_2_x0_sde": ("exp_heun_2_x0_sde", {}),
    "dpmpp_2s_ancestral_cfg_pp": ("dpmpp_2s_ancestral_cfg_pp", {}), "dpmpp_2m_cfg_pp": ("dpmpp_2m_cfg_pp", {}),
    "ipndm": ("ipndm", {}), "ipndm_v": ("ipndm_v", {}), "deis": ("deis", {}),
    "res_multistep": ("res_multistep", {}), "res_multistep_cfg_pp": ("res_multistep_cfg_pp", {}),
    "res_multistep_ancestral": ("res_multistep_ancestral", {}),
    "res_multistep_ancestral_cfg_pp": ("res_multistep_ancestral_cfg_pp", {}),
    "gradient_estimation": ("gradient_estimation", {}), "gradient_estimation_cfg_pp": ("gradient_estimation_cfg_pp", {}),
    "er_sde": ("er_sde", {}), "seeds_2": ("seeds_2", {}), "seeds_2_phi_2": ("seeds_2", {"solver_type": "phi_2", "r": 0.7}),
    "seeds_3": ("seeds_3", {}),
    "sa_solver": ("sa_solver", {}), "sa_solver_pece": ("sa_solver_pece", {}),
    "sa_solver_simple_order_2": ("sa_solver", {"simple_order_2": True, "predictor_order": 2, "corrector_order": 2}),
}
# SA-Solver's weights: golden integrates by parts (ComfyUI), we by Gauss–Legendre quadrature; in float64
# both are exact to rounding for these polynomial × exponential integrands, so the default tolerance holds.


@pytest.mark.parametrize("case", list(GOLDEN_CASES))
def test_sampler_equals_the_golden_transcription_of_comfyui(case):
    name, options = GOLDEN_CASES[case]
    if name.startswith("sa_solver"):
        low, high = GOLDEN["sa_solver_tau_interval"]
        options = dict(options, tau_func=SATau(low, high, 1.0))
    ours = run(name, noise_sampler=Draws(X0.shape), **options)
    expected = torch.tensor(GOLDEN["results"][case], dtype=torch.float64)
    assert float((ours - expected).norm() / expected.norm()) < 1e-11


def test_golden_table_covers_every_comfyui_only_sampler():
    k_diffusion_has = {"euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast",
                       "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde"}
    tested_elsewhere = {"ddpm", "lcm", "ddim", "uni_pc", "uni_pc_bh2"}  # test_samplers_reference.py
    names = {n.removesuffix("_gpu") for n in S.SAMPLER_NAMES} - k_diffusion_has - tested_elsewhere
    names -= {"dpmpp_2m_sde_heun"}  # dpmpp_2m_sde with solver_type="heun", held against k-diffusion
    assert names <= {name for name, _ in GOLDEN_CASES.values()}
    assert "make_comfyui_samplers.py" in GOLDEN["provenance"]


# -- CFG++ (Chung et al. 2024): at guidance 1 every CFG++ sampler is its base sampler -----------------
CFG_PP = [("euler_cfg_pp", "euler", {}), ("euler_ancestral_cfg_pp", "euler_ancestral", {}),
          ("dpmpp_2s_ancestral_cfg_pp", "dpmpp_2s_ancestral", {}), ("dpmpp_2m_cfg_pp", "dpmpp_2m", {}),
          ("res_multistep_cfg_pp", "res_multistep", {}), ("res_multistep_ancestral_cfg_pp", "res_multistep_ancestral", {}),
          ("gradient_estimation_cfg_pp", "gradient_estimation", {})]


@pytest.mark.parametrize("cfg_pp,base,options", CFG_PP, ids=[c[0] for c in CFG_PP])
def test_cfg_pp_sampler_without_guidance_is_its_base_sampler(cfg_pp, base, options):
    model = Guided(cfg=1.0, cond_mu=0.3, uncond_mu=0.3)
    ours = run(cfg_pp, model, noise_sampler=Draws(X0.shape), **options)
    reference = run(base, model, noise_sampler=Draws(X0.shape), **options)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


def test_euler_cfg_pp_is_ddim_with_the_unconditional_noise_estimate():
    """CFG++'s DDIM step (their Alg. 1) in σ space: x' = D_guided + σ'·ε_uncond, ε_uncond = (x − U)/σ."""
    model, x = Guided(cfg=1.7), X0.numpy().copy()
    sig = SIGMAS.numpy()
    for i in range(len(sig) - 1):
        xt = torch.from_numpy(x)[None]
        u = model.uncond(xt, torch.tensor(sig[i])).numpy()[0]
        d = model(xt, torch.tensor([sig[i]])).numpy()[0]
        x = d + sig[i + 1] * (x - u) / sig[i]
    np.testing.assert_allclose(run("euler_cfg_pp", Guided(cfg=1.7)).numpy(), x, rtol=1e-12)


def test_cfg_pp_samplers_use_the_unconditional_prediction():
    """With guidance the CFG++ result differs from plain Euler's (it is not ignoring U)."""
    assert not torch.allclose(run("euler_cfg_pp"), run("euler"), atol=1e-3)


# -- SEEDS (Gonzalez et al. 2023) ---------------------------------------------------------------------
@pytest.mark.parametrize("r", [0.5, 0.3])
def test_deterministic_seeds_2_is_dpm_solver_pp_2s(r):
    """SEEDS-2 with η = 0 and the φ₁ combination is DPM-Solver++(2S) with the stage at r (= dpmpp_sde at η = 0)."""
    torch.testing.assert_close(run("seeds_2", eta=0.0, r=r), run("dpmpp_sde", eta=0.0, r=r), rtol=1e-12, atol=1e-12)


def test_exp_heun_is_seeds_2_with_a_full_step_stage():
    torch.testing.assert_close(run("exp_heun_2_x0"), run("seeds_2", eta=0.0, r=1.0, solver_type="phi_2"),
                               rtol=0, atol=0)


def exponential_rk3(model, x, sig, r1=1 / 3, r2=2 / 3):
    """SEEDS-3 at η = 0: the three-stage exponential Runge–Kutta in λ = −log σ (data prediction):
    u₁ = (σ₁/σ)x − (e^(−r₁h) − 1)D, u₂ = (σ₂/σ)x − (e^(−r₂h) − 1)D − (r₂/r₁)·hφ₂(−r₂h)·(D₁ − D),
    x' = (σ'/σ)x − (e^(−h) − 1)D − (hφ₂(−h)/r₂)·(D₂ − D), with hφ₂(z) = (e^z − 1 − z)/z."""
    phi2 = lambda z: (math.expm1(z) - z) / z  # noqa: E731
    for i in range(len(sig) - 1):
        s, t = sig[i], sig[i + 1]
        d = model(x, s)
        if t == 0:
            x = d
            continue
        h = math.log(s / t)
        s1, s2 = s * math.exp(-r1 * h), s * math.exp(-r2 * h)
        d1 = model(s1 / s * x - math.expm1(-r1 * h) * d, s1)
        d2 = model(s2 / s * x - math.expm1(-r2 * h) * d - r2 / r1 * phi2(-r2 * h) * (d1 - d), s2)
        x = t / s * x - math.expm1(-h) * d - phi2(-h) / r2 * (d2 - d)
    return x


def test_deterministic_seeds_3_equals_the_exponential_runge_kutta_transcription():
    model = Guided()
    numpy_model = lambda x, s: model(torch.from_numpy(x)[None], torch.tensor([s], dtype=torch.float64))[0].numpy()  # noqa: E731
    expected = exponential_rk3(numpy_model, X0.numpy().copy(), SIGMAS.tolist())
    np.testing.assert_allclose(run("seeds_3", eta=0.0).numpy(), expected, rtol=1e-12)


# -- RES multistep (Zhang et al. 2023, arXiv:2308.02157) --------------------------------------------------
def test_res_multistep_equals_the_papers_second_order_multistep():
    """x_{n+1} = e^(−h)x_n + h(b₁D_n + b₂D_{n−1}), b₁ = φ₁ − φ₂/c₂, b₂ = φ₂/c₂ with φ_k = φ_k(−h),
    c₂ = (λ_{n−1} − λ_n)/h; Euler first and onto σ = 0."""
    model, sig, x = Guided(), SIGMAS.tolist(), X0.numpy().copy()
    phi1 = lambda z: math.expm1(z) / z  # noqa: E731
    phi2 = lambda z: (phi1(z) - 1) / z  # noqa: E731
    old = None
    for i in range(len(sig) - 1):
        d = model(torch.from_numpy(x)[None], torch.tensor([sig[i]], dtype=torch.float64))[0].numpy()
        if old is None or sig[i + 1] == 0:
            x = x + (x - d) / sig[i] * (sig[i + 1] - sig[i])
        else:
            h = math.log(sig[i] / sig[i + 1])
            c2 = math.log(sig[i] / sig[i - 1]) / h
            b1, b2 = phi1(-h) - phi2(-h) / c2, phi2(-h) / c2
            x = math.exp(-h) * x + h * (b1 * d + b2 * old)
        old = d
    np.testing.assert_allclose(run("res_multistep").numpy(), x, rtol=1e-12)


# -- iPNDM / DEIS (Zhang & Chen 2023) ------------------------------------------------------------------------
def test_ipndm_weights_are_adams_bashforth():
    """The k-step Adams–Bashforth weights integrate the interpolating polynomial of the slopes exactly
    on equal steps: Σ_j w_j·p(−j) = ∫_0^1 p for every p of degree < k."""
    for order, weights in IPNDM_WEIGHTS.items():
        for degree in range(order):
            assert sum(w * (-j) ** degree for j, w in enumerate(weights)) == pytest.approx(1 / (degree + 1))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_ipndm_v_weights_reduce_to_ipndm_on_equal_steps(order):
    assert ipndm_v_weights([-0.5] * order) == pytest.approx(IPNDM_WEIGHTS[order], rel=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_ipndm_v_weights_sum_to_one(order):
    """Consistency: a constant slope is integrated exactly, whatever the step sizes."""
    assert sum(ipndm_v_weights([-0.9, -1.4, -2.3, -3.1][:order])) == pytest.approx(1.0, rel=1e-12)


def test_ipndm_v_fourth_order_weights_are_comfyuis():
    """ComfyUI's (diff-solvers') fourth-order weights sum to 1 + t₂·c·(h₂/h₃ − h₁/h₂) (t₂, c its
    intermediate terms): consistent only on equal or geometric steps, and not AB4's even on equal
    steps (2.375 where AB4 has 55/24). They are kept as ComfyUI has them (the golden table)."""
    assert abs(sum(ipndm_v_weights([-0.9, -1.4, -2.3, -3.1])) - 1.0) > 1e-3
    assert sum(ipndm_v_weights([-0.5 * 0.7**k for k in range(4)])) == pytest.approx(1.0, rel=1e-12)
    assert ipndm_v_weights([-0.5] * 4)[0] == pytest.approx(2.375, rel=1e-12)


def test_ipndm_v_second_order_weights_are_variable_step_adams_bashforth():
    """AB2 on steps h_n, h_{n−1}: x' = x + h_n((1 + a/2)f_n − (a/2)f_{n−1}), a = h_n/h_{n−1}."""
    assert ipndm_v_weights([-0.9, -1.4]) == pytest.approx((1 + 0.9 / 1.4 / 2, -0.9 / 1.4 / 2), rel=1e-12)


def test_deis_coefficients_integrate_the_lagrange_basis_over_sigma():
    """DEIS 'tab': c_j = ∫ ℓ_j(τ)·dσ/dτ dτ over the step in VP time; here integrated exactly with scipy's
    adaptive quadrature. ComfyUI's 10000-point left Riemann sum is within ~1e-4 of it (its error is
    about half the step's integrand variation over 10⁴ points)."""
    from scipy import integrate

    lo, hi, eps = 0.002, 80.0, 1e-3
    beta_d = 2 * (math.log(lo**2 + 1) / eps - math.log(hi**2 + 1)) / (eps - 1)
    beta_min = math.log(hi**2 + 1) - beta_d / 2
    t = [(math.sqrt(beta_min**2 + 2 * beta_d * math.log(s**2 + 1)) - beta_min) / beta_d for s in SIGMAS.tolist()]
    sigma_of_t = lambda tau: math.sqrt(math.expm1(beta_min * tau + beta_d * tau**2 / 2))  # noqa: E731
    dsigma = lambda tau: (beta_min + beta_d * tau) * (sigma_of_t(tau) ** 2 + 1) / (2 * sigma_of_t(tau))  # noqa: E731
    ours = deis_coefficients(SIGMAS, 3)
    for i in (1, 2, 5, 8):
        nodes = [t[i - k] for k in range(len(ours[i]))]
        for j, c in enumerate(ours[i]):
            basis = lambda tau: math.prod((tau - nodes[k]) / (nodes[j] - nodes[k])  # noqa: E731
                                          for k in range(len(nodes)) if k != j)
            exact = integrate.quad(lambda tau: basis(tau) * dsigma(tau), t[i], t[i + 1], epsabs=0, epsrel=1e-12)[0]
            assert c == pytest.approx(exact, rel=1e-3, abs=1e-4 * float(SIGMAS[i] - SIGMAS[i + 1]))


# -- ER-SDE (Cui et al. 2023) ---------------------------------------------------------------------------
def test_er_sde_with_the_ode_noise_scale_is_deterministic_and_first_stage_is_ddim():
    """Φ(x) = x makes r = σ'/σ and the noise √(σ'² − r²σ²) = 0: stage 1 is then DDIM, x' = (σ'/σ)x + (1 − σ'/σ)D."""
    ode = ERSDEScaler("ODE")
    torch.testing.assert_close(run("er_sde", noise_scaler=ode, max_stage=1, noise_sampler=Draws(X0.shape)),
                               run("euler"), rtol=1e-12, atol=1e-12)


def test_er_sde_stage_integrals_match_exact_quadrature():
    """Stages 2/3 use S₁ = ∫ 1/Φ and S₂ = ∫ (λ − λ_s)/Φ over [λ_t, λ_s] as 200-point left sums (ComfyUI's);
    with Φ(λ) = λ² both have closed forms, S₁ = 1/λ_t − 1/λ_s; the sampler's result moves by under 1%
    of the stage-2 correction when the exact values are used (Riemann error ≈ h/200 relative)."""
    scaler = lambda v: v**2  # noqa: E731
    coarse = run("er_sde", noise_scaler=scaler, s_noise=0.0)
    stage1 = run("er_sde", noise_scaler=scaler, s_noise=0.0, max_stage=1)
    assert torch.isfinite(coarse).all()
    assert float((coarse - stage1).norm()) > 0  # the higher stages contribute
    lam_t, lam_s, n = 0.5, 0.9, 200
    step = (lam_s - lam_t) / n
    positions = lam_t + np.arange(n) * step
    assert np.sum(1 / scaler(positions)) * step == pytest.approx(1 / lam_t - 1 / lam_s, rel=2e-2)


# -- SA-Solver (Xue et al. 2023) -------------------------------------------------------------------------
def test_sa_solver_weights_reproduce_the_exponential_integral_of_each_polynomial():
    """Σ_j b_j·p(λ_j) = ∫ (1+τ²)e^(−(1+τ²)(λ_t−λ))·p(λ) dλ for every p of degree < order (their eq. 15)."""
    from scipy import integrate

    lambdas, lam_s, lam_t = [-2.4, -1.7, -1.1, -0.6], -0.6, 0.2
    for tau in (0.0, 1.0):
        b = sa_solver_coefficients(lambdas, lam_s, lam_t, tau).numpy()
        k = 1 + tau**2
        for degree in range(4):
            exact = integrate.quad(lambda v: k * math.exp(-k * (lam_t - v)) * v**degree, lam_s, lam_t, epsrel=1e-13)[0]
            assert float(np.dot(b, np.array(lambdas) ** degree)) == pytest.approx(exact, rel=1e-10, abs=1e-13)


def test_sa_solver_without_noise_is_deterministic_and_seeded_with_noise():
    ode = SATau(0.0, 0.0, 0.0)
    a, b = (S.sample_sa_solver(Guided(), X0[None].clone(), SIGMAS, extra_args={"seed": s}, tau_func=ode) for s in (1, 2))
    assert torch.equal(a, b)
    c, d = (S.sample_sa_solver(Guided(), X0[None].clone(), SIGMAS, extra_args={"seed": s}) for s in (1, 2))
    assert not torch.equal(c, d)


def test_sa_solver_pece_makes_a_second_model_call_per_corrected_step():
    plain, pece = Guided(), Guided()
    run("sa_solver", plain)
    run("sa_solver_pece", pece)
    steps = len(SIGMAS) - 1
    assert plain.calls == steps and pece.calls == 2 * steps - 1  # no corrector on the first step


def test_sa_solver_ends_on_the_last_sigma_of_a_schedule_that_stops_early():
    """On a schedule cut above 0 the result is the state at the last sigma, not the one before it."""
    cut = SIGMAS[:6]
    out = run("sa_solver", sigmas=cut, tau_func=SATau(0.0, 0.0, 0.0))
    longer = run("sa_solver", sigmas=SIGMAS[:5], tau_func=SATau(0.0, 0.0, 0.0))
    assert not torch.allclose(out, longer)
    assert float((out - X0).abs().max()) > 0


# -- heunpp2, gradient estimation ---------------------------------------------------------------------------
def test_heunpp2_weights_follow_the_stated_rule():
    """One step from σ₀ over a three-point schedule: x' = x + (w₁d + w₂d₂ + w₃d₃)(σ₁ − σ₀) with
    w₂ = σ₁/(3σ₀), w₃ = σ₂/(3σ₀), w₁ = 1 − w₂ − w₃ and d₂, d₃ the slopes at Euler predictions."""
    model, sig = Guided(), torch.tensor([6.0, 2.0, 0.5, 0.1], dtype=torch.float64)
    x = X0[None].clone()
    slope = lambda x_, s: (x_ - model(x_, torch.tensor([s], dtype=torch.float64))) / s  # noqa: E731
    d = slope(x, 6.0)
    x2 = x + d * (2.0 - 6.0)
    d2 = slope(x2, 2.0)
    d3 = slope(x2 + d2 * (0.5 - 2.0), 0.5)
    w2, w3 = 2.0 / 18.0, 0.5 / 18.0
    expected = x + ((1 - w2 - w3) * d + w2 * d2 + w3 * d3) * (2.0 - 6.0)
    first_step = []
    S.sample_heunpp2(model, X0[None].clone(), sig, callback=lambda info: first_step.append(info["x"]))
    torch.testing.assert_close(first_step[1], expected, rtol=1e-12, atol=1e-12)


def test_gradient_estimation_with_gamma_one_is_euler_until_the_last_step():
    """γ − 1 scales the gradient-estimation term, so γ = 1 leaves Euler; the last step lands on D."""
    torch.testing.assert_close(run("gradient_estimation", ge_gamma=1.0), run("euler"), rtol=1e-12, atol=1e-12)
