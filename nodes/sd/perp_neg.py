"""Perp-Neg (Armandpour et al. 2023): a negative prompt that only removes what is perpendicular to the
positive one, measured from an empty prompt's prediction.

With P, N, E the denoised predictions for the positive, negative and empty prompts:

    p = P − E,  n = N − E,  n⊥ = n − (⟨n, p⟩/‖p‖²)·p      (sums over the whole batch tensor)
    D = E + cfg·(p − neg_scale·n⊥)

`PerpNeg` is the model patch (ComfyUI's deprecated PerpNeg node: a CFG function that runs the empty
prompt in a call of its own); `PerpNegGuider` the guider (the three prompts in one batch, with the
model's pre- and post-CFG hooks around the formula).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .diffusion_model import DiffusionModel
from .guidance import CFGGuider, parse_conditioning
from .patches import GuidanceStep, ModelPatches, SamplingRun, post_cfg, pre_cfg


def perp_neg(positive: torch.Tensor, negative: torch.Tensor, empty: torch.Tensor, neg_scale: float,
             cond_scale: float) -> torch.Tensor:
    """The Perp-Neg guided prediction (see the module docstring)."""
    pos, neg = positive - empty, negative - empty
    length2 = torch.norm(pos) ** 2
    # p = 0 (the positive prompt predicts what the empty one does): nothing to be parallel to
    along = torch.mul(neg, pos).sum() / length2 if length2 > 0 else 0.0
    perpendicular = neg - along * pos
    return empty + cond_scale * (pos - perpendicular * neg_scale)


class PerpNeg:
    """The PerpNeg model patch: a CFG function using ``empty_conditioning``'s prediction as the base."""

    def __init__(self, empty_conditioning: Any, neg_scale: float) -> None:
        parse_conditioning(empty_conditioning, "empty_conditioning")  # fail at the node, not mid-run
        self.empty_conditioning = empty_conditioning
        self.neg_scale = float(neg_scale)

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        x = step.input
        empty = step.run.entries(self.empty_conditioning, "negative", x, owner=self)
        (d_empty,) = step.run.predict([empty], x, step.sigma)
        return perp_neg(step.cond_denoised, step.uncond_denoised, d_empty, self.neg_scale, step.cond_scale)


class PerpNegGuider(CFGGuider):
    """A GUIDER value (ComfyUI's PerpNegGuider): positive, negative and empty prompts with ``cfg`` and
    ``neg_scale``. At neg_scale 0 the negative is not run, and at cfg 1 neither is the empty prompt
    (unless a model patch turns the cfg-1 shortcut off)."""

    def __init__(self, model: DiffusionModel, positive: Any, negative: Any, empty_conditioning: Any,
                 cfg: float = 8.0, neg_scale: float = 1.0, *, max_batch_area: int | None = None) -> None:
        super().__init__(model, cfg=cfg, max_batch_area=max_batch_area)
        self.neg_scale = float(neg_scale)
        empty = parse_conditioning(empty_conditioning, "empty_conditioning")
        for entry in empty:
            entry.options["prompt_type"] = "negative"
        self.original = {"positive": parse_conditioning(positive, "positive"),
                         "negative": parse_conditioning(negative, "negative"), "empty_negative_prompt": empty}

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, seed: int | None = None,
                 run: SamplingRun | None = None, patches: ModelPatches | None = None, **_: Any) -> torch.Tensor:
        run = self.run_for(run, seed, patches)
        positive, negative, empty = (self.conds.get(k) for k in ("positive", "negative", "empty_negative_prompt"))
        if not run.patches.disable_cfg1_optimization and math.isclose(self.neg_scale, 0.0):
            negative = None
            if math.isclose(self.cfg, 1.0):
                empty = None
        conds = [positive, negative, empty]
        out = pre_cfg(run, conds, run.predict(conds, x, sigma), self.cfg, x, sigma)
        denoised = perp_neg(out[0], out[1], out[2], self.neg_scale, self.cfg)
        step = GuidanceStep(run, x, sigma, self.cfg, [positive, negative], cond_denoised=out[0],
                            uncond_denoised=out[1],
                            extra={"empty_cond": empty, "empty_cond_denoised": out[2]})
        return post_cfg(step, denoised)
