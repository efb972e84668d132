"""Independent reference for the samplers ComfyUI has and k-diffusion 0.1.1 does not.

Run once to (re)write comfyui_samplers.json next to this file:

    .venv/bin/python tests/sampling/golden/make_comfyui_samplers.py

It shares no code with NodeGraph: each update rule is transcribed with numpy (float64) from
ComfyUI's comfy/k_diffusion/sampling.py, deis.py and sa_solver.py, comfy_extras/nodes_advanced_samplers.py
(Comfy-Org/ComfyUI as read on 2026-12-03; seeds_2's solver_type and exp_heun_2_x0 from its later
revision), for SD's discrete VP models (α = 1, λ = −log σ). The problem: 6 numbers, a cond and an
uncond denoiser D(x; σ) = μ + s²/(s²+σ²)·(x − μ) + 0.1·tanh(x)·σ/(1+σ) with different μ, guided
D = U + 2·(C − U); 10 Karras steps over SD's σ range; the noise samplers return standard-normal
draws of numpy's PCG64(seed 1234) in call order. Each rule is run as ComfyUI runs it, including
its choices beyond the papers (DEIS's 10000-point Riemann sums over a VP time fitted to σ ∈
[0.002, 80], heunpp2's weights, iPNDM-v's coefficients, ER-SDE's 200-point sums, SA-Solver's
integration by parts).
"""
import json
import math
import pathlib

import numpy as np

SIGMA_MIN, SIGMA_MAX = 0.029167158529162407, 14.614641189575195
X0 = np.array([-9.1, -3.3, -0.4, 0.7, 5.2, 12.6])
CFG = 2.0


def karras(n, rho=7.0):
    ramp = np.linspace(0, 1, n)
    lo, hi = SIGMA_MIN ** (1 / rho), SIGMA_MAX ** (1 / rho)
    return np.append((hi + ramp * (lo - hi)) ** rho, 0.0)


def toy(mu):
    def d(x, sigma):
        c = 0.25 / (0.25 + sigma**2)
        return mu + c * (x - mu) + 0.1 * np.tanh(x) * sigma / (1 + sigma)
    return d


COND, UNCOND = toy(0.3), toy(-0.2)


class Model:
    """The guided denoiser; `uncond` holds the unconditional prediction of the last call (the post-CFG hook)."""

    def __init__(self):
        self.uncond = None

    def __call__(self, x, sigma):
        self.uncond = UNCOND(x, sigma)
        return self.uncond + CFG * (COND(x, sigma) - self.uncond)


class Noise:
    def __init__(self):
        self.rng = np.random.Generator(np.random.PCG64(1234))

    def __call__(self, *_):
        return self.rng.standard_normal(X0.shape)


def to_d(x, sigma, denoised):
    return (x - denoised) / sigma


def ancestral(sigma_from, sigma_to, eta):
    if not eta:
        return sigma_to, 0.0
    up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    return (sigma_to**2 - up**2) ** 0.5, up


t_fn = lambda s: -np.log(s)  # noqa: E731
s_fn = lambda t: np.exp(-t)  # noqa: E731
phi1h = np.expm1  # h·φ₁(h)
phi2h = lambda h: (np.expm1(h) - h) / h  # noqa: E731


def euler_ancestral_cfg_pp(sig, eta=1.0, s_noise=1.0):
    m, noise, x = Model(), Noise(), X0.copy()
    for i in range(len(sig) - 1):
        den = m(x, sig[i])
        if sig[i + 1] == 0:
            x = den
            continue
        d = to_d(x, sig[i], m.uncond)
        down, up = ancestral(sig[i], sig[i + 1], eta)
        x = den + down * d
        if eta > 0 and s_noise > 0:
            x = x + noise() * s_noise * up
    return x


def euler_pp_alternative(sig):
    m, x = Model(), X0.copy()
    for i in range(len(sig) - 1):
        den = m(x, sig[i])
        x = x + to_d(x - den + m.uncond, sig[i], den) * (sig[i + 1] - sig[i])
    return x


def dpmpp_2s_ancestral_cfg_pp(sig, eta=1.0, s_noise=1.0):
    m, noise, x = Model(), Noise(), X0.copy()
    for i in range(len(sig) - 1):
        den = m(x, sig[i])
        unc = m.uncond
        down, up = ancestral(sig[i], sig[i + 1], eta)
        if down == 0:
            x = den + to_d(x, sig[i], unc) * down
        else:
            t, tn = t_fn(sig[i]), t_fn(down)
            h = tn - t
            s = t + h / 2
            x2 = (s_fn(s) / s_fn(t)) * (x + (den - unc)) - np.expm1(-h / 2) * den
            den2 = m(x2, s_fn(s))
            x = (s_fn(tn) / s_fn(t)) * (x + (den - unc)) - np.expm1(-h) * den2
        if sig[i + 1] > 0:
            x = x + noise() * s_noise * up
    return x


def dpmpp_2m_cfg_pp(sig):
    m, x, old = Model(), X0.copy(), None
    for i in range(len(sig) - 1):
        den = m(x, sig[i])
        unc = m.uncond
        t, tn = t_fn(sig[i]), (t_fn(sig[i + 1]) if sig[i + 1] > 0 else np.inf)
        h = tn - t
        if old is None or sig[i + 1] == 0:
            mix = -np.exp(-h) * unc
        else:
            r = (t - t_fn(sig[i - 1])) / h
            mix = -np.exp(-h) * unc - np.expm1(-h) * (1 / (2 * r)) * (den - old)
        x = den + mix + np.exp(-h) * x
        old = unc
    return x


def heunpp2(sig):
    m, x = Model(), X0.copy()
    s_end = sig[-1]
    for i in range(len(sig) - 1):
        den = m(x, sig[i])
        d = to_d(x, sig[i], den)
        dt = sig[i + 1] - sig[i]
        if sig[i + 1] == s_end:
            x = x + d * dt
        elif sig[i + 2] == s_end:
            x2 = x + d * dt
            d2 = to_d(x2, sig[i + 1], m(x2, sig[i + 1]))
            w2 = sig[i + 1] / (2 * sig[0])
            x = x + (d * (1 - w2) + d2 * w2) * dt
        else:
            x2 = x + d * dt
            d2 = to_d(x2, sig[i + 1], m(x2, sig[i + 1]))
            x3 = x2 + d2 * (sig[i + 2] - sig[i + 1])
            d3 = to_d(x3, sig[i + 2], m(x3, sig[i + 2]))
            w2, w3 = sig[i + 1] / (3 * sig[0]), sig[i + 2] / (3 * sig[0])
            x = x + ((1 - w2 - w3) * d + w2 * d2 + w3 * d3) * dt
    return x


def ipndm(sig, variable=False, max_order=4):
    m, x, buf = Model(), X0.copy(), []
    for i in range(len(sig) - 1):
        tc, tn = sig[i], sig[i + 1]
        den = m(x, tc)
        d = (x - den) / tc
        order = min(max_order, i + 1)
        if tn == 0:
            xn = den
        elif order == 1:
            xn = x + (tn - tc) * d
        elif not variable:
            w = {2: [3, -1, 0, 0, 2], 3: [23, -16, 5, 0, 12], 4: [55, -59, 37, -9, 24]}[order]
            hist = [d] + buf[::-1]
            xn = x + (tn - tc) * sum(w[k] * hist[k] for k in range(order)) / w[4]
        else:
            hn, h1 = tn - tc, tc - sig[i - 1]
            if order == 2:
                xn = x + hn * ((2 + hn / h1) / 2 * d - (hn / h1) / 2 * buf[-1])
            else:
                h2 = sig[i - 1] - sig[i - 2]
                tmp = (1 - hn / (3 * (hn + h1)) * (hn * (hn + h1)) / (h1 * (h1 + h2))) / 2
                if order == 3:
                    c1 = (2 + hn / h1) / 2 + tmp
                    c2 = -(hn / h1) / 2 - (1 + h1 / h2) * tmp
                    c3 = tmp * h1 / h2
                    xn = x + hn * (c1 * d + c2 * buf[-1] + c3 * buf[-2])
                else:
                    h3 = sig[i - 2] - sig[i - 3]
                    tmp2 = ((1 - hn / (3 * (hn + h1))) / 2 + (1 - hn / (2 * (hn + h1))) * hn / (6 * (hn + h1 + h2))) \
                        * (hn * (hn + h1) * (hn + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3))
                    q = h1 * (h1 + h2) / (h2 * (h2 + h3))
                    c1 = (2 + hn / h1) / 2 + tmp + tmp2
                    c2 = -(hn / h1) / 2 - (1 + h1 / h2) * tmp - (1 + h1 / h2 + q) * tmp2
                    c3 = tmp * h1 / h2 + (h1 / h2 + q * (1 + h2 / h3)) * tmp2
                    c4 = -tmp2 * q * h1 / h2
                    xn = x + hn * (c1 * d + c2 * buf[-1] + c3 * buf[-2] + c4 * buf[-3])
        buf = (buf + [d])[-(max_order - 1):]
        x = xn
    return x


def deis_coeffs(sig, max_order=3, n=10000, eps_s=1e-3, smin=0.002, smax=80.0):
    beta_d = 2 * (np.log(smin**2 + 1) / eps_s - np.log(smax**2 + 1)) / (eps_s - 1)
    beta_min = np.log(smax**2 + 1) - 0.5 * beta_d
    t = (np.sqrt(beta_min**2 + 2 * beta_d * np.log(sig**2 + 1)) - beta_min) / beta_d
    b0, b1 = beta_min, beta_d + beta_min
    out = []
    for i in range(len(t) - 1):
        order = min(i + 1, max_order)
        if order == 1 or sig[i + 1] <= 0:
            out.append([])
            continue
        taus = np.linspace(t[i], t[i + 1], n)
        alpha = np.exp(-0.5 * taus**2 * (b1 - b0) - taus * b0)
        dlog = -taus * (b1 - b0) - b0
        integrand = -0.5 * dlog / np.sqrt(alpha * (1 - alpha))
        prev = t[[i - k for k in range(order)]]
        row = []
        for j in range(order):
            poly = np.ones_like(taus)
            for k in range(order):
                if k != j:
                    poly = poly * (taus - prev[k]) / (prev[j] - prev[k])
            row.append(np.sum(integrand * poly) * (t[i + 1] - t[i]) / n)
        out.append(row)
    return out


def deis(sig):
    m, x, buf = Model(), X0.copy(), []
    coeffs = deis_coeffs(sig)
    for i in range(len(sig) - 1):
        den = m(x, sig[i])
        d = (x - den) / sig[i]
        order = 1 if sig[i + 1] <= 0 else min(3, i + 1)
        if order == 1:
            xn = x + (sig[i + 1] - sig[i]) * d
        else:
            xn = x + coeffs[i][0] * d + sum(c * b for c, b in zip(coeffs[i][1:], buf[::-1]))
        buf = (buf + [d])[-2:]
        x = xn
    return x


def res_multistep(sig, eta=0.0, cfg_pp=False, s_noise=1.0):
    m, noise, x = Model(), Noise(), X0.copy()
    old_den = old_down = None
    for i in range(len(sig) - 1):
        den = m(x, sig[i])
        unc = m.uncond
        down, up = ancestral(sig[i], sig[i + 1], eta)
        if down == 0 or old_den is None:
            if cfg_pp:
                x = den + to_d(x, sig[i], unc) * down
            else:
                x = x + to_d(x, sig[i], den) * (down - sig[i])
        else:
            t, t_old, tn, t_prev = t_fn(sig[i]), t_fn(old_down), t_fn(down), t_fn(sig[i - 1])
            h = tn - t
            c2 = (t_prev - t_old) / h
            p1 = np.expm1(-h) / -h
            p2 = (p1 - 1) / -h
            b1, b2 = p1 - p2 / c2, p2 / c2
            if cfg_pp:
                x = x + (den - unc)
                x = s_fn(h) * x + h * (b1 * unc + b2 * old_den)
            else:
                x = s_fn(h) * x + h * (b1 * den + b2 * old_den)
        if sig[i + 1] > 0 and up:
            x = x + noise() * s_noise * up
        old_den, old_down = (unc if cfg_pp else den), down
    return x


def gradient_estimation(sig, cfg_pp=False, gamma=2.0):
    m, x, old_d = Model(), X0.copy(), None
    for i in range(len(sig) - 1):
        den = m(x, sig[i])
        d = to_d(x, sig[i], m.uncond if cfg_pp else den)
        dt = sig[i + 1] - sig[i]
        if sig[i + 1] == 0:
            x = den
        else:
            x = den + d * sig[i + 1] if cfg_pp else x + d * dt
            if i >= 1:
                x = x + (gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


def er_sde(sig, s_noise=1.0, max_stage=3):
    scaler = lambda v: v * (np.exp(v**0.3) + 10.0)  # noqa: E731
    m, noise, x = Model(), Noise(), X0.copy()
    pts = np.arange(200.0)
    lam = sig.copy()  # σ/α with α = 1
    old_den = old_dd = None
    for i in range(len(sig) - 1):
        den = m(x, sig[i])
        stage = min(max_stage, i + 1)
        if sig[i + 1] == 0:
            x = den
        else:
            ls, lt = lam[i], lam[i + 1]
            r = scaler(lt) / scaler(ls)
            x = r * x + (1 - r) * den
            if stage >= 2:
                dt = lt - ls
                step = -dt / 200.0
                pos = lt + pts * step
                sp = scaler(pos)
                s = np.sum(1 / sp) * step
                dd = (den - old_den) / (ls - lam[i - 1])
                x = x + (dt + s * scaler(lt)) * dd
                if stage >= 3:
                    su = np.sum((pos - ls) / sp) * step
                    du = (dd - old_dd) / ((ls - lam[i - 2]) / 2)
                    x = x + ((dt**2) / 2 + su * scaler(lt)) * du
                old_dd = dd
            if s_noise > 0:
                x = x + noise() * s_noise * np.nan_to_num(np.sqrt(lt**2 - ls**2 * r**2))
        old_den = den
    return x


def seeds_2(sig, eta=1.0, s_noise=1.0, r=0.5, solver_type="phi_1"):
    m, noise, x = Model(), Noise(), X0.copy()
    inject = eta > 0 and s_noise > 0
    for i in range(len(sig) - 1):
        den = m(x, sig[i])
        if sig[i + 1] == 0:
            x = den
            continue
        ls, lt = t_fn(sig[i]), t_fn(sig[i + 1])
        h = lt - ls
        he = h * (eta + 1)
        ls1 = ls + r * (lt - ls)
        s1 = s_fn(ls1)
        x2 = s1 / sig[i] * np.exp(-r * h * eta) * x - phi1h(-r * he) * den
        if inject:
            sde = np.sqrt(-np.expm1(-2 * r * h * eta)) * noise()
            x2 = x2 + sde * s1 * s_noise
        den2 = m(x2, s1)
        if solver_type == "phi_1":
            dd = den + (den2 - den) / (2 * r)
            x = sig[i + 1] / sig[i] * np.exp(-h * eta) * x - phi1h(-he) * dd
        else:
            b2 = phi2h(-he) / r
            b1 = phi1h(-he) - b2
            x = sig[i + 1] / sig[i] * np.exp(-h * eta) * x - (b1 * den + b2 * den2)
        if inject:
            seg = (r - 1) * h * eta
            sde = sde * np.exp(seg) + np.sqrt(-np.expm1(2 * seg)) * noise()
            x = x + sde * sig[i + 1] * s_noise
    return x


def seeds_3(sig, eta=1.0, s_noise=1.0, r1=1 / 3, r2=2 / 3):
    m, noise, x = Model(), Noise(), X0.copy()
    inject = eta > 0 and s_noise > 0
    for i in range(len(sig) - 1):
        den = m(x, sig[i])
        if sig[i + 1] == 0:
            x = den
            continue
        ls, lt = t_fn(sig[i]), t_fn(sig[i + 1])
        h = lt - ls
        he = h * (eta + 1)
        s1, s2 = s_fn(ls + r1 * h), s_fn(ls + r2 * h)
        x2 = s1 / sig[i] * np.exp(-r1 * h * eta) * x - phi1h(-r1 * he) * den
        if inject:
            sde = np.sqrt(-np.expm1(-2 * r1 * h * eta)) * noise()
            x2 = x2 + sde * s1 * s_noise
        den2 = m(x2, s1)
        a32 = r2 / r1 * phi2h(-r2 * he)
        a31 = phi1h(-r2 * he) - a32
        x3 = s2 / sig[i] * np.exp(-r2 * h * eta) * x - (a31 * den + a32 * den2)
        if inject:
            seg = (r1 - r2) * h * eta
            sde = sde * np.exp(seg) + np.sqrt(-np.expm1(2 * seg)) * noise()
            x3 = x3 + sde * s2 * s_noise
        den3 = m(x3, s2)
        b3 = phi2h(-he) / r2
        b1 = phi1h(-he) - b3
        x = sig[i + 1] / sig[i] * np.exp(-h * eta) * x - (b1 * den + b3 * den3)
        if inject:
            seg = (r2 - 1) * h * eta
            sde = sde * np.exp(seg) + np.sqrt(-np.expm1(2 * seg)) * noise()
            x = x + sde * sig[i + 1] * s_noise
    return x


def sa_b(curr, s, t, tau, simple=False, corrector=False):
    n, k, h = len(curr), 1 + tau**2, t - s
    if simple and n == 2:
        if corrector:
            b1 = 0.5 * k * h
            return np.array([-np.expm1(-h * k) - b1, b1])
        b2 = 0.5 * k * h**2 / (curr[-2] - s)
        return np.array([b2, -np.expm1(-h * k) - b2])
    p = np.arange(n)
    prod = t**p - s**p * np.exp(-k * h)
    depth = p[:, None] - p[None, :]
    lf = np.array([math.lgamma(q + 1) for q in p])
    rc = lf[:, None] - lf[None, :]
    if tau > 0:
        rc = rc - depth * math.log(k)
    coeff = np.tril(np.exp(rc) * np.where(depth % 2 == 0, 1.0, -1.0))
    return np.linalg.solve(np.vander(np.asarray(curr), n, increasing=True).T, coeff @ prod)


def sa_solver(sig, use_pece=False, tau_interval=(SIGMA_MAX * 0.35, 0.5), eta=1.0, s_noise=1.0, po=3, co=4,
              simple=False):
    tau_func = lambda s: eta if tau_interval[0] >= s >= tau_interval[1] else 0.0  # noqa: E731
    m, noise, x = Model(), Noise(), X0.copy()
    lam = -np.log(np.where(sig > 0, sig, np.nan))
    x_pred, h, tau, nz, preds = x, 0.0, 0.0, 0.0, []
    n = len(sig) - 1
    to_end = sig[-1] == 0
    for i in range(n):
        den = m(x_pred, sig[i])
        preds = (preds + [den])[-max(po, co):]
        pu = min(po, len(preds))
        cu = 0 if i == 0 or (sig[i + 1] == 0 and not use_pece) else min(co, len(preds))
        if to_end:
            pu, cu = min(pu, len(sig) - 2 - i), min(cu, len(sig) - 1 - i)
        if cu == 0:
            x = x_pred
        else:
            b = sa_b(lam[i - cu + 1:i + 1], lam[i - 1], lam[i], tau, simple, corrector=True)
            x = sig[i] / sig[i - 1] * np.exp(-(tau**2) * h) * x + sum(bj * pj for bj, pj in zip(b, preds[-cu:]))
            if tau > 0 and s_noise > 0:
                x = x + nz
            if use_pece:
                den = m(x, sig[i])
                preds[-1] = den
        if sig[i + 1] == 0:
            x_pred = den
        else:
            tau = tau_func(sig[i + 1])
            b = sa_b(lam[i - pu + 1:i + 1], lam[i], lam[i + 1], tau, simple)
            h = lam[i + 1] - lam[i]
            x_pred = sig[i + 1] / sig[i] * np.exp(-(tau**2) * h) * x + sum(bj * pj for bj, pj in zip(b, preds[-pu:]))
            if tau > 0 and s_noise > 0:
                nz = noise() * sig[i + 1] * np.sqrt(-np.expm1(-2 * tau**2 * h)) * s_noise
                x_pred = x_pred + nz
    return x_pred


SIGMAS = karras(10)
CASES = {
    "euler_cfg_pp": lambda s: euler_ancestral_cfg_pp(s, eta=0.0, s_noise=0.0),
    "euler_ancestral_cfg_pp": euler_ancestral_cfg_pp,
    "euler_cfg_pp_alternative": euler_pp_alternative,
    "heunpp2": heunpp2,
    "exp_heun_2_x0": lambda s: seeds_2(s, eta=0.0, s_noise=0.0, r=1.0, solver_type="phi_2"),
    "exp_heun_2_x0_sde": lambda s: seeds_2(s, r=1.0, solver_type="phi_2"),
    "dpmpp_2s_ancestral_cfg_pp": dpmpp_2s_ancestral_cfg_pp,
    "dpmpp_2m_cfg_pp": dpmpp_2m_cfg_pp,
    "ipndm": ipndm,
    "ipndm_v": lambda s: ipndm(s, variable=True),
    "deis": deis,
    "res_multistep": res_multistep,
    "res_multistep_cfg_pp": lambda s: res_multistep(s, cfg_pp=True),
    "res_multistep_ancestral": lambda s: res_multistep(s, eta=1.0),
    "res_multistep_ancestral_cfg_pp": lambda s: res_multistep(s, eta=1.0, cfg_pp=True),
    "gradient_estimation": gradient_estimation,
    "gradient_estimation_cfg_pp": lambda s: gradient_estimation(s, cfg_pp=True),
    "er_sde": er_sde,
    "seeds_2": seeds_2,
    "seeds_2_phi_2": lambda s: seeds_2(s, solver_type="phi_2", r=0.7),
    "seeds_3": seeds_3,
    "sa_solver": sa_solver,
    "sa_solver_pece": lambda s: sa_solver(s, use_pece=True),
    "sa_solver_simple_order_2": lambda s: sa_solver(s, simple=True, po=2, co=2),
}

if __name__ == "__main__":
    result = {
        "provenance": ("Computed by tests/sampling/golden/make_comfyui_samplers.py (numpy "
                       f"{np.__version__}, float64) from the rules of ComfyUI's comfy/k_diffusion/sampling.py, "
                       "deis.py, sa_solver.py and comfy_extras/nodes_advanced_samplers.py; see that script's "
                       "docstring for the problem, the noise and what each case sets."),
        "x0": X0.tolist(), "sigmas": SIGMAS.tolist(), "cfg": CFG, "noise_seed": 1234,
        "sa_solver_tau_interval": [SIGMA_MAX * 0.35, 0.5],
        "results": {name: fn(SIGMAS).tolist() for name, fn in CASES.items()},
    }
    path = pathlib.Path(__file__).with_name("comfyui_samplers.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
