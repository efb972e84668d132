"""Shared fixtures for the sampling tests: the k-diffusion reference and analytic toy denoisers."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest
import torch


def pytest_configure(config):
    # nodes/sd/noise.py silences this torchsde warning at import, but pytest restores the warning
    # filters after collection; the queries that trigger it are the same as ComfyUI's (see noise.py).
    config.addinivalue_line("filterwarnings", "ignore:Should have tb<=t1 but got:UserWarning")
    config.addinivalue_line("filterwarnings", "ignore:Should have ta>=t0 but got:UserWarning")


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one intra-op thread avoids thread hand-off costs on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def kdiff():
    """k-diffusion 0.1.1's `sampling` module, the reference implementation of the update rules.

    `import k_diffusion` runs its package __init__, which imports `clip`, which needs pkg_resources
    (gone from current setuptools). Only `k_diffusion.sampling` (and its `utils`) is needed, so the
    package is registered as an empty namespace and that one module is imported.
    """
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("k-diffusion is not installed (test-only reference: pip install k-diffusion==0.1.1.post1)")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("k_diffusion", package)
    return importlib.import_module("k_diffusion.sampling")


class ToyUNet(torch.nn.Module):
    """A tiny module with LDM's U-Net signature forward(x, timesteps, context=None, y=None).

    A conv mixes pixels, the timestep enters through a sinusoid, cross-attention over `context`
    makes the output depend on the prompt (and its tokens), and `y` (if given) adds a per-channel bias.
    """

    def __init__(self, channels: int = 4, context_dim: int = 8, adm_channels: int = 0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.to_q = torch.nn.Linear(channels, context_dim, bias=False)
        self.to_out = torch.nn.Linear(context_dim, channels, bias=False)
        self.label = torch.nn.Linear(adm_channels, channels) if adm_channels else None
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        self.calls: list[dict] = []

    def forward(self, x, timesteps, context=None, y=None):
        self.calls.append({"batch": x.shape[0], "timesteps": timesteps.clone(), "dtype": x.dtype,
                           "tokens": None if context is None else context.shape[1], "y": y is not None})
        h = torch.tanh(self.conv(x)) + torch.sin(timesteps / 100.0).view(-1, 1, 1, 1).to(x.dtype)
        q = self.to_q(h.permute(0, 2, 3, 1).flatten(1, 2))                  # [B, HW, D]
        attn = torch.softmax(q @ context.transpose(1, 2) / context.shape[-1] ** 0.5, dim=-1)
        a = self.to_out(attn @ context).transpose(1, 2).reshape(x.shape)
        out = 0.5 * h + a
        if y is not None and self.label is not None:
            out = out + self.label(y).view(x.shape[0], -1, 1, 1)
        return out


class GaussianDenoiser:
    """The exact denoiser for data x_0 ~ N(mu, s²) (elementwise): D(x; σ) = mu + s²/(s² + σ²)·(x − mu).

    Its probability-flow ODE has the closed-form solution (x − mu)/√(s² + σ²) = const, which
    `exact` evaluates; `nonlinear` adds a smooth non-Gaussian term for stricter equivalence tests.
    """

    def __init__(self, mu: float = 0.3, s: float = 0.5, nonlinear: float = 0.0):
        self.mu, self.s, self.nonlinear = mu, s, nonlinear
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **_ignored) -> torch.Tensor:
        self.calls += 1
        sigma = sigma.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        c = self.s**2 / (self.s**2 + sigma**2)
        out = self.mu + c * (x - self.mu)
        if self.nonlinear:
            out = out + self.nonlinear * torch.tanh(x) * sigma / (1 + sigma)
        return out

    def exact(self, x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        scale = ((self.s**2 + sigma_to**2) / (self.s**2 + sigma_from**2)) ** 0.5
        return self.mu + (x - self.mu) * scale
