"""Tolerances for comparing float32 results that are the same mathematics computed along different
paths (imported by tests as ``numerics``).

Two evaluations of one network in float32 agree bit for bit only when they run the same kernels in
the same order. A different batch shape, thread count or CPU (AVX2, AVX-512, AMX; MKL and oneDNN
pick their blocking per machine) changes the order in which every dot product is summed, and so its
rounding. How far apart can the results be?

- One dot product of length K, summed in float32 (unit roundoff u = 2^-24): with data of mixed signs
  the rounding errors of the K partial sums behave like a random walk, so the result's relative
  error is about u·√K. Two summation orders differ by at most about twice that: 2·u·√K.
- A network is a chain of such layers (linear and convolution layers; normalisation keeps the
  activations' scale, so a relative error passes through a layer with a gain near one). Relative
  errors of L layers add up at most linearly: ε ≈ 2·u·√K·L, with K the largest fan-in and L the
  number of weight layers (counting parallel ones, such as q/k/v, as if in sequence: an overestimate).

:func:`path_rtol` gives that bound for a module. A test comparing two code paths asserts the
relative error (ARCHITECTURE's metric, :func:`rel_err`) is below it, times whatever the pipeline
adds (e.g. classifier-free guidance multiplies the difference of two predictions by cfg; a sampler
adds up its steps' errors); each test says its factor. The bound is loose by design — observed
differences are 10–100× smaller — and still far below what a real mistake gives (a wrong noise, a
wrong token or a wrong weight moves the result by a relative error of order one).
"""
from __future__ import annotations

import math

import torch
from torch import nn

U32 = 2.0 ** -24  # float32 unit roundoff


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """‖ours − ref‖₂ / ‖ref‖₂ over the whole tensor, in float64."""
    ours, ref = ours.detach().double(), ref.detach().double()
    return float((ours - ref).norm() / ref.norm().clamp_min(1e-30))


def fan_ins(module: nn.Module) -> list[int]:
    """The fan-in (length of each dot product) of every linear and convolution layer in ``module``."""
    out = []
    for m in module.modules():
        if isinstance(m, nn.Linear):
            out.append(m.in_features)
        elif isinstance(m, nn.modules.conv._ConvNd):
            out.append(m.in_channels // m.groups * math.prod(m.kernel_size))
        elif isinstance(m, nn.MultiheadAttention):
            out.append(m.embed_dim)
    return out


def path_rtol(*modules: nn.Module, extra_layers: int = 0) -> float:
    """Relative error bound between two float32 evaluations of ``modules`` (in sequence) that differ
    only in summation order: 2·u·√K·L (see the module docstring). ``extra_layers`` counts matrix
    products that are not modules (e.g. attention's q·k and p·v) at the same fan-in bound."""
    ks = [k for m in modules for k in fan_ins(m)]
    if not ks:
        raise ValueError("path_rtol: no linear or convolution layers found")
    return 2 * U32 * math.sqrt(max(ks)) * (len(ks) + extra_layers)
