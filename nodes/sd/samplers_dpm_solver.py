"""DPM-Solver (Lu et al. 2022, arXiv:2206.00927) in noise prediction, as k-diffusion and ComfyUI run it:
"dpm_fast" (fixed steps of orders 3, 3, …, then 2/1, spread evenly in λ) and "dpm_adaptive" (embedded
DPM-Solver-12 or -23 pairs with a PID step-size controller). Both integrate from the schedule's first
sigma down to its smallest non-zero one and return x there (they do not take the final step to 0);
of the schedule they use only those two ends (and, for dpm_fast, the number of steps).

Notation as the paper: t = λ = −log σ, ε = (x − D)/σ, h = t' − t, DPM-Solver-1: x' = x − σ'·(e^h − 1)·ε.
"""
from __future__ import annotations

import math

import torch

from .samplers_common import ancestral_noise, ancestral_step, sigma_at


class PIDStepSizeController:
    """Proposes the next step size from the error estimates (PID control in log space, limited by
    1 + atan(factor − 1)); a step is accepted when its factor reaches `accept_safety`."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order=1, accept_safety=0.81, eps=1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety, self.eps = accept_safety, eps
        self.errs: list[float] = []

    def propose_step(self, error) -> bool:
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error] * 3
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


class DPMSolver:
    """DPM-Solver-1/2/3 steps on a denoiser, caching ε within a step (eps_cache keys: 'eps', 'eps_r1', …)."""

    def __init__(self, model, extra_args, report=None):
        self.model, self.extra_args, self.report = model, extra_args, report

    def eps(self, cache: dict, key: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if key not in cache:
            sigma = sigma_at(t)
            cache[key] = (x - self.model(x, sigma * x.new_ones([x.shape[0]]), **self.extra_args)) / sigma
        return cache[key]

    def step_1(self, x, t, t_next, cache):
        h = t_next - t
        return x - sigma_at(t_next) * h.expm1() * self.eps(cache, "eps", x, t)

    def step_2(self, x, t, t_next, cache, r1=1 / 2):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - sigma_at(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return x - sigma_at(t_next) * h.expm1() * eps - sigma_at(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)

    def step_3(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - sigma_at(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = (x - sigma_at(s2) * (r2 * h).expm1() * eps
              - sigma_at(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return x - sigma_at(t_next) * h.expm1() * eps - sigma_at(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)

    def step(self, order, x, t, t_next, cache):
        return (self.step_1, self.step_2, self.step_3)[order - 1](x, t, t_next, cache)

    def ancestral_target(self, t, t_next, t_end, eta):
        """(t' actually stepped to, noise σ to add): the ancestral split of σ(t) → σ(t_next)."""
        if not eta:
            return t_next, 0.0
        sigma_down, _ = ancestral_step(sigma_at(t), sigma_at(t_next), eta)
        t_down = torch.minimum(t_end, sigma_down.log().neg())
        return t_down, (sigma_at(t_next) ** 2 - sigma_at(t_down) ** 2) ** 0.5


def _schedule_ends(sigmas: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(t_start, t_end) in λ as ComfyUI takes them: the first sigma and the last non-zero one (a
    rising schedule, e.g. flipped, integrates backwards, which needs eta = 0)."""
    last = sigmas[-1] if sigmas[-1] != 0 else sigmas[-2]
    if last <= 0 or sigmas[0] <= 0:
        raise ValueError("dpm_fast/dpm_adaptive: the schedule's first and last non-zero sigmas must be above 0")
    t_start, t_end = sigmas[0].detach().log().neg(), last.detach().log().neg()
    if eta and not t_end > t_start:
        raise ValueError("dpm_fast/dpm_adaptive: eta must be 0 on a rising (reversed) schedule")
    return t_start, t_end


def _fast_orders(nfe: int) -> list[int]:
    """Orders of dpm_fast's steps for `nfe` model calls: 3, 3, …, then 2, 1 or the remainder."""
    m = nfe // 3 + 1
    return [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]


@torch.no_grad()
def sample_dpm_fast(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, s_noise=1.0,
                    noise_sampler=None):
    """DPM-Solver-fast with len(sigmas) − 1 model calls, steps evenly spaced in λ (DPM-Solver §3.4)."""
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    t_start, t_end = _schedule_ends(sigmas, eta)
    solver = DPMSolver(model, extra_args)
    orders = _fast_orders(len(sigmas) - 1)
    ts = torch.linspace(float(t_start), float(t_end), len(orders) + 1, device=x.device, dtype=t_start.dtype)
    for i, order in enumerate(orders):
        cache: dict = {}
        t, t_next = ts[i], ts[i + 1]
        t_down, sigma_up = solver.ancestral_target(t, t_next, t_end, eta)
        eps = solver.eps(cache, "eps", x, t)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma_at(t), "sigma_hat": sigma_at(t), "denoised": x - sigma_at(t) * eps})
        x = solver.step(order, x, t, t_down, cache)
        if eta:
            x = x + sigma_up * s_noise * noise_sampler(sigma_at(t), sigma_at(t_next))
    return x


@torch.no_grad()
def sample_dpm_adaptive(model, x, sigmas, extra_args=None, callback=None, disable=None, order=3, rtol=0.05,
                        atol=0.0078, h_init=0.05, pcoeff=0.0, icoeff=1.0, dcoeff=0.0, accept_safety=0.81,
                        eta=0.0, s_noise=1.0, noise_sampler=None):
    """Adaptive DPM-Solver-12 (order 2) or -23 (order 3): each attempt takes the lower- and higher-order
    step, the scaled difference ‖(x_low − x_high)/max(atol, rtol·max(|x_low|, |x_prev|))‖/√n is the
    error the PID controller accepts or rejects; accepted steps continue from x_high. The callback
    counts attempts, so `i` may pass len(sigmas) − 1."""
    if order not in (2, 3):
        raise ValueError(f"dpm_adaptive: order must be 2 or 3, got {order}")
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    s, t_end = _schedule_ends(sigmas, eta)
    forward = bool(t_end > s)
    solver = DPMSolver(model, extra_args)
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    pid = PIDStepSizeController(abs(h_init) * (1 if forward else -1), pcoeff, icoeff, dcoeff,
                                1.5 if eta else order, accept_safety)
    x_prev, attempts = x, 0
    while (s < t_end - 1e-5) if forward else (s > t_end + 1e-5):
        cache: dict = {}
        t = torch.minimum(t_end, s + pid.h) if forward else torch.maximum(t_end, s + pid.h)
        t_down, sigma_up = solver.ancestral_target(s, t, t_end, eta)
        denoised = x - sigma_at(s) * solver.eps(cache, "eps", x, s)
        if order == 2:
            x_low, x_high = solver.step_1(x, s, t_down, cache), solver.step_2(x, s, t_down, cache)
        else:
            x_low, x_high = solver.step_2(x, s, t_down, cache, r1=1 / 3), solver.step_3(x, s, t_down, cache)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        if pid.propose_step(error):
            x_prev = x_low
            x = x_high + sigma_up * s_noise * noise_sampler(sigma_at(s), sigma_at(t)) if eta else x_high
            s = t
        attempts += 1
        if callback is not None:
            callback({"x": x, "i": attempts - 1, "sigma": sigma_at(s), "sigma_hat": sigma_at(s), "denoised": denoised})
    return x
