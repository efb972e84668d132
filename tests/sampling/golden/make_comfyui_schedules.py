"""Independent reference for ComfyUI's own schedulers (normal, sgm_uniform, simple, ddim_uniform, beta,
linear_quadratic, kl_optimal).

Run once to (re)write comfyui_schedules.json next to this file:

    .venv/bin/python tests/sampling/golden/make_comfyui_schedules.py

It shares no code with NodeGraph: the formulas are transcribed with numpy (float64) and scipy
from ComfyUI's source as read on 2026-11-24 (comfyanonymous/ComfyUI, files below):

* comfy/model_sampling.py, ModelSamplingDiscrete: betas = linspace(√0.00085, √0.012, 1000)² in
  float64, ᾱ = cumprod(1 − β), σ = √((1 − ᾱ)/ᾱ) (stored as float32); timestep(σ) = argmin over
  the table of |log σ − log σ_t|; sigma(t) = exp of the linear interpolation of log σ between
  floor(t) and ceil(t).
* comfy/samplers.py:
  normal_scheduler:  timesteps = linspace(timestep(σ_max), timestep(σ_min), steps); σ = sigma(t); + [0]
  sgm_uniform:       the same with linspace(…, steps + 1)[:-1]
  simple_scheduler:  [σ_table[-(1 + int(k · len/steps))] for k < steps] + [0]
  ddim_scheduler:    σ_table[1], σ_table[1 + c], … (c = max(len // steps, 1), while index < len),
                     reversed, + [0]
  beta_scheduler:    t_k = rint(scipy.stats.beta.ppf(1 − linspace(0, 1, steps, endpoint=False), 0.6, 0.6)
                     · (len − 1)); σ_table[t_k] with consecutive repeats dropped; + [0]
  linear_quadratic_schedule (added 2026-12-03): n = steps; one step is [1, 0]; else m = n // 2,
                     u_k = k·0.025/m for k < m, then u_k = a·k² + b·k + c for m ≤ k < n with
                     d = m − 0.025·n, a = d/(m·(n − m)²), b = 0.025/m − 2d/(n − m)², c = a·m²;
                     σ = (1 − [u…, 1]) · σ_max
  kl_optimal_scheduler (added 2026-12-03): r_k = k/(n − 1), σ_k = tan(r_k·atan σ_min + (1 − r_k)·atan σ_max)
                     for k < n (n = 1: σ_max), + [0]
"""
import json
import pathlib

import numpy as np
import scipy
import scipy.stats

STEPS = [1, 2, 3, 7, 10, 20, 50]

betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
alphas_cumprod = np.cumprod(1.0 - betas)
table = np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod).astype(np.float32).astype(np.float64)
log_table = np.log(table)


def timestep(sigma):
    return int(np.argmin(np.abs(np.log(sigma) - log_table)))


def sigma(t):
    t = np.clip(np.asarray(t, dtype=np.float64), 0, len(table) - 1)
    lo, hi = np.floor(t).astype(int), np.ceil(t).astype(int)
    w = t - np.floor(t)
    return np.exp((1 - w) * log_table[lo] + w * log_table[hi])


def normal(steps, sgm=False):
    start, end = timestep(table[-1]), timestep(table[0])
    ts = np.linspace(start, end, steps + 1)[:-1] if sgm else np.linspace(start, end, steps)
    return list(sigma(ts)) + [0.0]


def simple(steps):
    stride = len(table) / steps
    return [table[-(1 + int(k * stride))] for k in range(steps)] + [0.0]


def ddim_uniform(steps):
    stride = max(len(table) // steps, 1)
    picked = [table[i] for i in range(1, len(table), stride)]
    return picked[::-1] + [0.0]


def beta(steps, a=0.6, b=0.6):
    ts = np.rint(scipy.stats.beta.ppf(1 - np.linspace(0, 1, steps, endpoint=False), a, b) * (len(table) - 1))
    out, last = [], None
    for t in ts:
        if t != last:
            out.append(table[int(t)])
        last = t
    return out + [0.0]


def linear_quadratic(steps, threshold=0.025):
    if steps == 1:
        return [table[-1], 0.0]
    m = steps // 2
    d = m - threshold * steps
    q = steps - m
    a, b = d / (m * q**2), threshold / m - 2 * d / q**2
    c = a * m**2
    u = [k * threshold / m for k in range(m)] + [a * k * k + b * k + c for k in range(m, steps)] + [1.0]
    return [(1.0 - v) * table[-1] for v in u]


def kl_optimal(steps):
    r = np.arange(steps) / max(steps - 1, 1)
    return list(np.tan(r * np.arctan(table[0]) + (1 - r) * np.arctan(table[-1]))) + [0.0]


schedules = {
    "normal": {n: normal(n) for n in STEPS},
    "sgm_uniform": {n: normal(n, sgm=True) for n in STEPS},
    "simple": {n: simple(n) for n in STEPS},
    "ddim_uniform": {n: ddim_uniform(n) for n in STEPS},
    "beta": {n: beta(n) for n in STEPS},
    "linear_quadratic": {n: linear_quadratic(n) for n in STEPS},
    "kl_optimal": {n: kl_optimal(n) for n in STEPS},
}
result = {
    "provenance": ("Computed by tests/sampling/golden/make_comfyui_schedules.py (numpy "
                   f"{np.__version__}, scipy {scipy.__version__}) from the formulas of ComfyUI's "
                   "comfy/samplers.py and comfy/model_sampling.py; see that script's docstring."),
    "sigma_min": float(table[0]),
    "sigma_max": float(table[-1]),
    "schedules": {name: {str(n): [float(v) for v in values] for n, values in by_steps.items()}
                  for name, by_steps in schedules.items()},
}
path = pathlib.Path(__file__).with_name("comfyui_schedules.json")
path.write_text(json.dumps(result, indent=1) + "\n")
print(f"wrote {path}")
