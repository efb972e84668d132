"""ComfyUI's DualCFGGuider: guidance by two prompts and a negative.

With D₁, D₂, D_neg the denoised predictions for cond1, cond2 and negative:

    regular:  D = D_neg + (D₂ − D_neg)·cfg_cond2_negative + (D₁ − D₂)·cfg_conds
    nested:   D = D_neg + cfg_cond2_negative·(D₂ + (D₁ − D₂)·cfg_conds − D_neg)

cond2 is encoded as a negative prompt (prompt_type "negative", e.g. SDXL refiner's aesthetic score).
For CFG++ samplers the "unconditional" prediction is D_neg (regular) or D₂ (nested), the one the
inner classifier-free guidance step treats as unconditional in ComfyUI.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .diffusion_model import DiffusionModel
from .guidance import CFGGuider, calc_cond_batch, cfg_combine, parse_conditioning

STYLES = ("regular", "nested")


class DualCFGGuider(CFGGuider):
    """A GUIDER value: model + cond1, cond2, negative with two guidance scales (see the module docstring)."""

    def __init__(self, model: DiffusionModel, cond1: Any, cond2: Any, negative: Any, cfg_conds: float = 8.0,
                 cfg_cond2_negative: float = 8.0, style: str = "regular", *,
                 max_batch_area: int | None = None) -> None:
        if style not in STYLES:
            raise ValueError(f"DualCFGGuider: style must be one of {', '.join(STYLES)}, got {style!r}")
        super().__init__(model, cfg=cfg_conds, max_batch_area=max_batch_area)
        self.cfg_conds, self.cfg_cond2_negative, self.nested = float(cfg_conds), float(cfg_cond2_negative), style == "nested"
        middle = parse_conditioning(cond2, "cond2")
        for entry in middle:
            entry.options["prompt_type"] = "negative"
        self.original = {"positive": parse_conditioning(cond1, "cond1"), "middle": middle,
                         "negative": parse_conditioning(negative, "negative")}

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, seed: int | None = None,
                 uncond_out: dict | None = None, **_: Any) -> torch.Tensor:
        negative, middle, positive = (self.conds.get(k) for k in ("negative", "middle", "positive"))
        if not self.nested and uncond_out is None and math.isclose(self.cfg_cond2_negative, 1.0):
            negative = None  # ComfyUI's cfg-1 shortcut: unused predictions are not computed
            if math.isclose(self.cfg_conds, 1.0):
                middle = None
        d_neg, d_mid, d_pos = calc_cond_batch(self.model, [negative, middle, positive], x, sigma, self.max_batch_area)
        if self.nested:
            if uncond_out is not None:
                uncond_out["uncond"] = d_mid
            return d_neg + self.cfg_cond2_negative * (cfg_combine(d_pos, d_mid, self.cfg_conds) - d_neg)
        if uncond_out is not None:
            uncond_out["uncond"] = d_neg
        return cfg_combine(d_mid, d_neg, self.cfg_cond2_negative) + (d_pos - d_mid) * self.cfg_conds
