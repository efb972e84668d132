"""Stable Diffusion's noise schedules and what a sampler needs from them.

The U-Net was trained on 1000 discrete timesteps with betas = linspace(√β_start, √β_end, 1000)².
Samplers work in "sigma space" (x_σ = x_0 + σ·ε, Karras et al. 2022), so this module converts
between the two and between the U-Net's raw output and the denoised estimate x̂_0:

    σ_t = √((1 − ᾱ_t) / ᾱ_t)            ᾱ_t = Π_{s ≤ t} (1 − β_s)
    U-Net input   x / √(σ² + σ_d²)       (σ_d = 1: the variance-preserving scaling)
    eps:  x̂_0 = x − σ·ε̂
    v:    x̂_0 = x·σ_d²/(σ² + σ_d²) − v̂·σ·σ_d/√(σ² + σ_d²)
    edm:  x̂_0 = x·σ_d²/(σ² + σ_d²) + F̂·σ·σ_d/√(σ² + σ_d²)
    x0:   x̂_0 = the output itself (img_to_img: the same, and the U-Net sees x unscaled)
    lcm:  x̂_0 = c_out(t)·(x − σ·ε̂) + c_skip(t)·x, with t' = 10·t, c_skip = ¼/(t'² + ¼), c_out = t'/√(t'² + ¼)
    cosmos_rflow (s = σ/(σ+1)): input x·(1 − s), x̂_0 = x·(1 − s) − F̂·s, start latent + σ·noise

The schedules ComfyUI's model-sampling nodes offer for these models: the discrete one
(`ModelSamplingDiscrete`, optionally rescaled to zero terminal SNR), the 50-step subset an LCM
was distilled on (`ModelSamplingDiscreteDistilled`), and the continuous log-linear one of EDM
models (`ModelSamplingContinuousEDM`, timestep = ¼·log σ; `ModelSamplingCosmosRFlow`).
Conventions follow ComfyUI's `comfy/model_sampling.py` (same float64 schedule stored as float32,
σ → timestep as the nearest log σ, timestep → σ by log-linear interpolation), so that the same
seed gives the same numbers.
"""
from __future__ import annotations

import math
from typing import Literal

import torch

Prediction = Literal["eps", "v", "edm", "x0", "img_to_img", "lcm", "cosmos_rflow"]
DISCRETE_PREDICTIONS = ("eps", "v", "x0", "img_to_img", "lcm")
CONTINUOUS_PREDICTIONS = ("eps", "v", "edm")

# ᾱ of the last timestep after the zero-terminal-SNR rescale (ComfyUI's value: σ stays finite).
ZSNR_LAST_ALPHA_BAR = 4.8973451890853435e-08
LCM_SIGMA_DATA = 0.5
LCM_TIMESTEP_SCALING = 10.0


def _per_sample(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a [B] (or scalar) sigma so it broadcasts over a [B, C, H, W] tensor."""
    sigma = torch.as_tensor(sigma, device=like.device)
    if sigma.ndim == 0:
        return sigma
    return sigma.view(sigma.shape[:1] + (1,) * (like.ndim - 1))


def rescale_zero_terminal_snr(sigmas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023 ("Common diffusion noise schedules and sample steps are flawed"): shift and scale
    √ᾱ so that the last timestep has zero signal and the first keeps its value; σ from the new ᾱ."""
    root = (1.0 / (sigmas * sigmas + 1.0)).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alpha_bar = root**2
    alpha_bar[-1] = ZSNR_LAST_ALPHA_BAR
    return ((1.0 - alpha_bar) / alpha_bar) ** 0.5


class _Sampling:
    """The prediction-type rules shared by every schedule (see the module docstring)."""

    prediction: Prediction = "eps"
    sigma_data = 1.0
    sigmas: torch.Tensor
    log_sigmas: torch.Tensor

    def to(self, device: torch.device | str) -> "_Sampling":
        """Keep the tables on `device` (where the sampling loop runs); returns self."""
        for name in ("sigmas", "log_sigmas", "alphas_cumprod"):
            if hasattr(self, name):
                setattr(self, name, getattr(self, name).to(device))
        return self

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- model input / output ---------------------------------------------------------------
    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Scale a sigma-space latent to the U-Net's input: x / √(σ² + σ_d²) (img_to_img: x as is)."""
        if self.prediction == "img_to_img":
            return x
        sigma = _per_sample(sigma, x)
        if self.prediction == "cosmos_rflow":
            return x * (1.0 - sigma / (sigma + 1.0))
        return x / (sigma**2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Turn the U-Net's raw output at noisy input `x` into the denoised x̂_0 (by prediction type)."""
        kind = self.prediction
        if kind in ("x0", "img_to_img"):
            return model_output
        s = _per_sample(sigma, model_output)
        if kind == "eps":
            return x - model_output * s
        if kind == "lcm":
            return self._lcm_denoised(sigma, model_output, x)
        if kind == "cosmos_rflow":
            s = s / (s + 1.0)
            return x * (1.0 - s) - model_output * s
        sd2 = self.sigma_data**2
        skip = x * sd2 / (s**2 + sd2)
        out = model_output * s * self.sigma_data / (s**2 + sd2) ** 0.5
        return skip + out if kind == "edm" else skip - out

    def _lcm_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1)
        t = _per_sample(self.timestep(sigma).to(x.device), model_output) * LCM_TIMESTEP_SCALING
        s = _per_sample(sigma, model_output)
        c_skip = LCM_SIGMA_DATA**2 / (t**2 + LCM_SIGMA_DATA**2)
        c_out = t / (t**2 + LCM_SIGMA_DATA**2) ** 0.5
        return c_out * (x - model_output * s) + c_skip * x

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent_image: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        """The sampler's starting point: latent + noise·σ, or noise·√(1 + σ²) for a full denoise.

        √(1 + σ²) is the total standard deviation of an SD latent (unit variance) noised to σ:
        it is what a pure-noise start must have (ComfyUI's `max_denoise` rule; cosmos_rflow has none).
        """
        sigma = _per_sample(sigma, noise)
        if max_denoise and self.prediction != "cosmos_rflow":
            noise = noise * torch.sqrt(1.0 + sigma**2.0)
        else:
            noise = noise * sigma
        return noise + latent_image

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Identity for the VP/VE parametrisation (kept so the sampling loop reads like ComfyUI's)."""
        return latent

    def is_max_denoise(self, sigmas: torch.Tensor) -> bool:
        """True when a schedule starts at (or above) σ_max, i.e. from pure noise."""
        sigma_max, first = float(self.sigma_max), float(sigmas[0])
        return math.isclose(sigma_max, first, rel_tol=1e-05) or first > sigma_max


class ModelSamplingDiscrete(_Sampling):
    """The discrete VP schedule of SD1.x/SD2.x/SDXL seen from sigma space.

    Args:
        prediction: what the U-Net predicts: "eps" (noise), "v" (velocity, SD2-v models), "x0" (the
            clean latent), "img_to_img" (x0 from an unscaled input) or "lcm" (consistency models).
        linear_start, linear_end: β at the first and last timestep (SD: 0.00085 and 0.012).
        timesteps: number of training timesteps (SD: 1000).
        zsnr: rescale the schedule to zero terminal SNR (models trained that way, e.g. with v-prediction).
    """

    def __init__(self, prediction: Prediction = "eps", linear_start: float = 0.00085, linear_end: float = 0.012,
                 timesteps: int = 1000, zsnr: bool = False) -> None:
        if prediction not in DISCRETE_PREDICTIONS:
            raise ValueError(f"ModelSamplingDiscrete: prediction must be one of {', '.join(DISCRETE_PREDICTIONS)}, "
                             f"got {prediction!r}")
        if timesteps < 2:
            raise ValueError(f"ModelSamplingDiscrete: timesteps must be at least 2, got {timesteps}")
        self.prediction: Prediction = prediction
        self.linear_start = linear_start
        self.linear_end = linear_end
        self.zsnr = bool(zsnr)
        betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas = ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5
        if self.zsnr:
            sigmas = rescale_zero_terminal_snr(sigmas)
            alphas_cumprod = 1.0 / (sigmas**2 + 1.0)
        self.alphas_cumprod = alphas_cumprod.float()
        self.set_sigmas(sigmas)

    def set_sigmas(self, sigmas: torch.Tensor) -> None:
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()

    def __repr__(self) -> str:
        zsnr = ", zsnr=True" if self.zsnr else ""
        return (f"{type(self).__name__}(prediction={self.prediction!r}, linear_start={self.linear_start}, "
                f"linear_end={self.linear_end}, timesteps={len(self.sigmas)}{zsnr})")

    # -- time conversions -------------------------------------------------------------------
    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The training timestep whose log σ is nearest to log `sigma` (int64, same shape)."""
        sigma = torch.as_tensor(sigma)
        log_sigma = sigma.log().to(self.log_sigmas.device)
        distance = (log_sigma - self.log_sigmas[:, None]).abs()
        return distance.argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """σ at a (fractional) timestep: linear interpolation of log σ between neighbours."""
        timestep = torch.as_tensor(timestep)
        return self._interpolate(timestep.float().to(self.log_sigmas.device)).to(timestep.device)

    def _interpolate(self, index: torch.Tensor) -> torch.Tensor:
        t = index.clamp(0, len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()

    def percent_to_sigma(self, percent: float) -> float:
        """σ reached after `percent` (0..1) of the schedule; 0 → "before the start", 1 → 0."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return self.sigma(torch.tensor((1.0 - percent) * 999.0)).item()


class ModelSamplingDiscreteDistilled(ModelSamplingDiscrete):
    """The discrete schedule an LCM was distilled on: 50 of the 1000 timesteps (999, 979, …, 19).

    σ ↔ timestep go through that subset: timestep = 20·index + 19 of the nearest of the 50 sigmas.
    """

    original_timesteps = 50

    def __init__(self, prediction: Prediction = "lcm", linear_start: float = 0.00085, linear_end: float = 0.012,
                 timesteps: int = 1000, zsnr: bool = False) -> None:
        super().__init__(prediction, linear_start, linear_end, timesteps, zsnr)
        self.skip_steps = timesteps // self.original_timesteps
        picked = [timesteps - 1 - k * self.skip_steps for k in reversed(range(self.original_timesteps))]
        self.set_sigmas(self.sigmas.double()[picked])

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return super().timestep(sigma) * self.skip_steps + (self.skip_steps - 1)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        timestep = torch.as_tensor(timestep)
        index = (timestep.float().to(self.log_sigmas.device) - (self.skip_steps - 1)) / self.skip_steps
        return self._interpolate(index).to(timestep.device)


class ModelSamplingContinuousEDM(_Sampling):
    """A continuous log-linear schedule from σ_min to σ_max (EDM-style models; ComfyUI's
    ModelSamplingContinuousEDM): 1000 sigmas evenly spaced in log σ, timestep = ¼·log σ.

    Args:
        prediction: "eps", "v" or "edm" (Karras et al.'s F-prediction preconditioning).
        sigma_min, sigma_max: the range of the schedule.
        sigma_data: the data standard deviation the preconditioning assumes (EDM models: 0.5).
    """

    def __init__(self, prediction: Prediction = "eps", sigma_min: float = 0.002, sigma_max: float = 120.0,
                 sigma_data: float = 1.0) -> None:
        if prediction not in self._predictions():
            raise ValueError(f"{type(self).__name__}: prediction must be one of {', '.join(self._predictions())}, "
                             f"got {prediction!r}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"{type(self).__name__}: need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        self.prediction: Prediction = prediction
        self.sigma_data = float(sigma_data)
        self.sigmas = torch.linspace(math.log(sigma_min), math.log(sigma_max), 1000).exp()
        self.log_sigmas = self.sigmas.log()

    @staticmethod
    def _predictions() -> tuple[str, ...]:
        return CONTINUOUS_PREDICTIONS

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(prediction={self.prediction!r}, sigma_min={float(self.sigma_min):g}, "
                f"sigma_max={float(self.sigma_max):g}, sigma_data={self.sigma_data})")

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return 0.25 * torch.as_tensor(sigma).log()

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        return (torch.as_tensor(timestep) / 0.25).exp()

    def percent_to_sigma(self, percent: float) -> float:
        """σ after `percent` of the schedule, log-linear between σ_max (0) and σ_min; 1 → 0."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        low, high = math.log(float(self.sigma_min)), math.log(float(self.sigma_max))
        return math.exp((high - low) * (1.0 - percent) + low)


class ModelSamplingCosmosRFlow(ModelSamplingContinuousEDM):
    """ComfyUI's cosmos_rflow sampling: the continuous log-linear sigmas with rectified-flow in/outputs
    (s = σ/(σ+1) is the flow time; timestep = s)."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 120.0, sigma_data: float = 1.0) -> None:
        super().__init__("cosmos_rflow", sigma_min, sigma_max, sigma_data)

    @staticmethod
    def _predictions() -> tuple[str, ...]:
        return ("cosmos_rflow",)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        return sigma / (sigma + 1)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        timestep = torch.as_tensor(timestep, dtype=torch.float32)
        top = float(self.sigma_max)
        return torch.where(timestep >= top / (top + 1), torch.tensor(top), timestep / (1 - timestep))


ModelSampling = _Sampling
"""What every schedule here offers (the type samplers and schedulers take)."""
