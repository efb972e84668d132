"""UniPC (Zhao et al. 2023, arXiv:2302.04867): the multistep predictor UniP-p with the corrector UniC,
data prediction, B(h) = h ("bh1") or e^h − 1 ("bh2"), as ComfyUI's uni_pc runs it (see sample_uni_pc).
"""
from __future__ import annotations

import torch

from .samplers_common import half_log_snr, report


@torch.no_grad()
def sample_uni_pc(model, x, sigmas, extra_args=None, callback=None, disable=None, variant="bh1"):
    """UniPC (Zhao et al. 2023): multistep predictor UniP-p + corrector UniC, data prediction, B(h) variants.

    As ComfyUI: order = min(3, steps − 1) with lower orders to start and to finish, the corrector's
    model evaluation is reused as the next step's history (so steps = model calls), no corrector
    on the last step, and a final σ of 0 is replaced by 0.001 (the result is x at σ = 0.001).
    Run in σ space, where UniPC's VP update x_t = (σ_t/σ_s)x − α_t(e^(−h) − 1)D − α_t B(h)Σρ_k D_k
    loses its α factors (so the callback's x is in σ space; ComfyUI reports its VP-scaled x).
    """
    extra_args = {} if extra_args is None else extra_args
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"uni_pc: variant must be 'bh1' or 'bh2', got {variant!r}")
    sigmas = sigmas.clone()
    if sigmas[-1] == 0:
        sigmas[-1] = 0.001
    steps = len(sigmas) - 1
    order = min(3, steps - 1)
    s_in = x.new_ones([x.shape[0]])

    def denoise(x_, sigma):
        return model(x_, sigma * s_in, **extra_args)

    history: list[tuple[torch.Tensor, torch.Tensor]] = []  # (σ, D(x; σ)) of the last `order` points
    for i in range(steps):
        if i == 0:
            history.append((sigmas[0], denoise(x, sigmas[0])))
        elif i < order:  # warm-up: order i
            x, d_new = unipc_update(x, history, sigmas[i], i, variant, denoise)
            history.append((sigmas[i], d_new))
        else:
            for k in ([i, i + 1] if i == steps - 1 else [i]):  # the last pass also lands on the final σ
                final = k == steps
                x, d_new = unipc_update(x, history, sigmas[k], min(order, steps + 1 - k), variant,
                                        None if final else denoise)
                if not final:
                    history = (history + [(sigmas[k], d_new)])[-order:]
        report(callback, x, i, sigmas[i], sigmas[i], history[-1][1])
    if steps == 1:
        # No update is made for a single step; ComfyUI's VP-space bookkeeping then returns x·α(σ_0)/α(σ_end).
        x = x * ((1 + sigmas[-1] ** 2) / (1 + sigmas[0] ** 2)) ** 0.5
    return x


def unipc_update(x, history, sigma_t, order, variant, denoise):
    """One UniPC step from the newest history point to σ_t with `order` history points.

    Predictor: x_t = (σ_t/σ_0)·x − (e^(−h) − 1)·D_0 − B(h)·Σ_k ρ_k (D_k − D_0)/r_k.
    Corrector (if `denoise` is given): re-evaluate D_t = D(x_t; σ_t), then redo the step with
    ρ^c over the same differences plus (D_t − D_0). Returns (x_t, D_t or None).
    """
    sigma_0, d_0 = history[-1]
    lam_0, lam_t = half_log_snr(sigma_0), half_log_snr(sigma_t)
    h = lam_t - lam_0
    rks, diffs = [], []
    for sigma_k, d_k in reversed(history[-order:-1]):
        r_k = (half_log_snr(sigma_k) - lam_0) / h
        rks.append(r_k)
        diffs.append((d_k - d_0) / r_k)
    hh = -h
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    rho_p, rho_c = unipc_coefficients(rks, float(hh), variant, order)
    x_t_ = (sigma_t / sigma_0) * x - torch.expm1(hh) * d_0
    x_t = x_t_ - b_h * sum(r * d for r, d in zip(rho_p, diffs)) if diffs else x_t_
    if denoise is None:
        return x_t, None
    d_t = denoise(x_t, sigma_t)
    correction = sum(r * d for r, d in zip(rho_c[:-1], diffs)) + rho_c[-1] * (d_t - d_0)
    return x_t_ - b_h * correction, d_t


def unipc_coefficients(rks, hh: float, variant: str, order: int):
    """Solve UniPC's order conditions R ρ = b for predictor and corrector weights (float64).

    R has rows r^(k−1) (k = 1…order) over nodes (r_1…r_{order−1}, 1);
    b_k = k!·φ_{k+1}(hh)/B(h) with hφ-recursion φ_2 = (e^hh − 1)/hh − 1, φ_{k+1} = φ_k/hh − 1/k!.
    Order-2 predictor and order-1 corrector use the paper's fixed ρ = 1/2.
    """
    nodes = torch.tensor([float(r) for r in rks] + [1.0], dtype=torch.float64)
    hh64 = torch.tensor(hh, dtype=torch.float64)
    b_h = hh64 if variant == "bh1" else torch.expm1(hh64)
    phi = torch.expm1(hh64) / hh64 - 1
    factorial = 1
    rows, b = [], []
    for k in range(1, order + 1):
        rows.append(nodes ** (k - 1))
        b.append(phi * factorial / b_h)
        factorial *= k + 1
        phi = phi / hh64 - 1 / factorial
    R, b = torch.stack(rows), torch.stack(b)
    if order == 2:
        rho_p = [0.5]
    elif len(rks) > 0:
        rho_p = torch.linalg.solve(R[:-1, :-1], b[:-1]).tolist()
    else:
        rho_p = []
    rho_c = [0.5] if order == 1 else torch.linalg.solve(R, b).tolist()
    return rho_p, rho_c


@torch.no_grad()
def sample_uni_pc_bh2(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """UniPC with B(h) = e^h − 1 (the "bh2" variant)."""
    return sample_uni_pc(model, x, sigmas, extra_args, callback, disable, variant="bh2")
