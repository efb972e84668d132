"""Seeded noise: the initial latent noise and the fresh noise that ancestral/SDE samplers inject.

Everything here reproduces ComfyUI's seeding, so a seed means the same thing in both:

* initial noise: a CPU `torch.Generator` seeded with the seed, `torch.randn` of the latent's full
  shape in float32 on the CPU (moved to the model's device later). With a LATENT's "batch_index"
  list, samples are drawn one at a time from that generator up to the largest index and the
  requested ones are kept (so image 3 of a batch can be re-made alone with the same seed).
* ancestral noise (`default_noise_sampler`): a generator on the latent's device seeded with
  seed + 1 on the CPU (seed on other devices), one `randn` of x's shape per injection.
* SDE noise (`BrownianTreeNoiseSampler`): increments of a Brownian motion over σ drawn from a
  `torchsde.BrownianTree` whose entropy is the seed, so results do not depend on the step count.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch

# torchsde rounds the tree's end points, so a query at exactly σ_max (float32) lands a hair outside and
# is clamped back with a warning; k-diffusion and ComfyUI do the same queries. Silence only that one.
warnings.filterwarnings("ignore", message=r"Should have (ta|tb)(<=t1|>=t0) but got", module=r"torchsde\.")

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def prepare_noise(latent: torch.Tensor, seed: int, batch_index: Sequence[int] | None = None) -> torch.Tensor:
    """The initial noise for `latent` ([B, C, H, W]) and `seed`, float32 on the CPU.

    With `batch_index`, row k of the result is the noise of batch position batch_index[k] of a
    batch drawn sample by sample, so any subset of a batch can be reproduced on its own.
    """
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    shape = tuple(latent.shape)
    if batch_index is None:
        return torch.randn(shape, dtype=torch.float32, generator=generator, device="cpu")
    indices = [int(i) for i in batch_index]
    if not indices or min(indices) < 0:
        raise ValueError(f"LATENT batch_index must be a non-empty list of indices ≥ 0, got {list(batch_index)!r}")
    wanted = set(indices)
    drawn: dict[int, torch.Tensor] = {}
    for i in range(max(indices) + 1):
        sample = torch.randn((1,) + shape[1:], dtype=torch.float32, generator=generator, device="cpu")
        if i in wanted:
            drawn[i] = sample
    return torch.cat([drawn[i] for i in indices], dim=0)


class RandomNoise:
    """Noise source of ComfyUI's RandomNoise node: seeded initial noise for a LATENT dict."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def generate_noise(self, latent: dict) -> torch.Tensor:
        return prepare_noise(latent["samples"], self.seed, latent.get("batch_index"))

    def __repr__(self) -> str:
        return f"RandomNoise(seed={self.seed})"


class DisableNoise:
    """Noise source of ComfyUI's DisableNoise node: zeros (its seed, used by SDE samplers, is 0)."""

    seed = 0

    def generate_noise(self, latent: dict) -> torch.Tensor:
        return torch.zeros(tuple(latent["samples"].shape), dtype=torch.float32, device="cpu")

    def __repr__(self) -> str:
        return "DisableNoise()"


def default_noise_sampler(x: torch.Tensor, seed: int | None = None) -> NoiseSampler:
    """Fresh standard-normal noise shaped like `x` for each ancestral step.

    With a seed, draws come from a generator on x's device seeded with seed + 1 on the CPU (seed
    elsewhere), as ComfyUI does; without one, from torch's global generator.
    """
    generator = ancestral_generator(x.device, seed)

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)

    return sample


def ancestral_generator(device: torch.device, seed: int | None) -> torch.Generator | None:
    """The generator of the ancestral noise: on `device`, seeded with seed + 1 on the CPU (seed
    elsewhere); None (torch's global generator) without a seed."""
    if seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) + 1 if torch.device(device).type == "cpu" else int(seed))
    return generator


class BrownianTreeNoiseSampler:
    """Normalised Brownian increments (W(σ_next) − W(σ)) / √|σ_next − σ| over [σ_min, σ_max].

    One `torchsde.BrownianTree` (entropy = seed) spans the whole interval, so the noise a step sees
    depends only on the seed and the σ interval it covers. The tree lives on the CPU, like
    ComfyUI's default; the increments are moved to x's device and dtype.
    """

    def __init__(self, x: torch.Tensor, sigma_min: torch.Tensor | float, sigma_max: torch.Tensor | float,
                 seed: int | None = None) -> None:
        import torchsde  # a runtime dependency, imported when an SDE sampler first needs it

        if seed is None:
            seed = int(torch.randint(0, 2**63 - 1, ()).item())
        t0 = torch.as_tensor(sigma_min).detach().cpu().float()
        t1 = torch.as_tensor(sigma_max).detach().cpu().float()
        self._sign = 1.0
        if t0 > t1:
            t0, t1, self._sign = t1, t0, -1.0
        w0 = torch.zeros(x.shape, dtype=x.dtype if x.dtype.is_floating_point else torch.float32)
        self._tree = torchsde.BrownianTree(t0, w0, t1, entropy=int(seed))
        self._device, self._dtype = x.device, x.dtype

    def __call__(self, sigma: torch.Tensor | float, sigma_next: torch.Tensor | float) -> torch.Tensor:
        s0 = torch.as_tensor(sigma).detach().cpu().float()
        s1 = torch.as_tensor(sigma_next).detach().cpu().float()
        sign = self._sign
        if s0 > s1:
            s0, s1, sign = s1, s0, -sign
        increment = self._tree(s0, s1) * sign
        return (increment / (s1 - s0).abs().sqrt()).to(device=self._device, dtype=self._dtype)
