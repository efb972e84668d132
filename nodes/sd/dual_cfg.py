"""ComfyUI's DualCFGGuider: guidance by two prompts and a negative.

With D₁, D₂, D_neg the denoised predictions for cond1, cond2 and negative:

    regular:  D = D_neg + (D₂ − D_neg)·cfg_cond2_negative + (D₁ − D₂)·cfg_conds
    nested:   D = D_neg + cfg_cond2_negative·(D₂ + (D₁ − D₂)·cfg_conds − D_neg)

cond2 is encoded as a negative prompt (prompt_type "negative", e.g. SDXL refiner's aesthetic score).
The classifier-free step inside each formula — D_neg + (D₂ − D_neg)·cfg_cond2_negative (regular), or
D₂ + (D₁ − D₂)·cfg_conds (nested) — runs the model's CFG hooks (cfg_function, post-CFG) as in
ComfyUI; its "unconditional" prediction (what CFG++ samplers read) is D_neg or D₂.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .diffusion_model import DiffusionModel
from .guidance import CFGGuider, parse_conditioning
from .patches import ModelPatches, SamplingRun, cfg_result

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
                 run: SamplingRun | None = None, patches: ModelPatches | None = None, **_: Any) -> torch.Tensor:
        run = self.run_for(run, seed, patches)
        negative, middle, positive = (self.conds.get(k) for k in ("negative", "middle", "positive"))
        if not self.nested and not run.patches.disable_cfg1_optimization and math.isclose(self.cfg_cond2_negative, 1.0):
            negative = None  # ComfyUI's cfg-1 shortcut: unused predictions are not computed
            if math.isclose(self.cfg_conds, 1.0):
                middle = None
        d_neg, d_mid, d_pos = run.predict([negative, middle, positive], x, sigma)
        if self.nested:  # the inner guidance (with the model's CFG hooks) treats cond2 as unconditional
            inner = cfg_result(run, d_pos, d_mid, self.cfg_conds, x, sigma, [positive, middle])
            return d_neg + self.cfg_cond2_negative * (inner - d_neg)
        outer = cfg_result(run, d_mid, d_neg, self.cfg_cond2_negative, x, sigma, [middle, negative])
        return outer + (d_pos - d_mid) * self.cfg_conds
