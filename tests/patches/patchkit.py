"""Helpers of the model-patch tests (imported as ``patchkit``): a tiny SD1-layout U-Net with attention at
every level, prompts, a guidance step with a real sampling run, and hooks that record what they see."""
from __future__ import annotations

import torch

from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.guidance import CFGGuider
from nodes.sd.patches import GuidanceStep, SamplingRun
from nodes.sd.testing import random_unet
from nodes.sd.unet import UNetModel, tiny_config

LATENT = (2, 4, 16, 16)
SIGMA = torch.tensor([3.0, 3.0])


def tiny_unet(seed: int = 1, **overrides) -> UNetModel:
    """SD1 traits, model channels 32 at levels ×1 ×2 ×4 (so FreeU's 4× and 2× levels exist), attention
    at every level and in the middle block."""
    config = dict(channel_mult=(1, 2, 4), transformer_depth=(1, 1, 1))
    config.update(overrides)
    return random_unet(tiny_config("sd1", **config), seed=seed).eval()


def tiny_model(seed: int = 1, **overrides) -> DiffusionModel:
    return DiffusionModel.for_family(tiny_unet(seed, **overrides), "sd1")


def prompt(seed: int, tokens: int = 77, width: int = 768) -> list:
    return [[torch.randn(1, tokens, width, generator=torch.Generator().manual_seed(seed)), {}]]


def latent(seed: int = 0, shape=LATENT) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def guider(model: DiffusionModel, cfg: float = 5.0, shape=LATENT) -> CFGGuider:
    g = CFGGuider(model, prompt(1), prompt(2), cfg)
    g.prepare(shape, torch.device("cpu"))
    return g


def step(**values) -> GuidanceStep:
    """A guidance step of a run without a model (for hooks that only compute)."""
    values.setdefault("sigma", SIGMA)
    values.setdefault("cond_scale", 5.0)
    values.setdefault("conds", [[], []])
    run = values.pop("run", None) or SamplingRun(None)
    return GuidanceStep(run, values.pop("input"), values.pop("sigma"), values.pop("cond_scale"), values.pop("conds"),
                        **values)


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
