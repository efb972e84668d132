"""The ControlNet model (lllyasviel's ``cldm.ControlNet``) in the original single-file key layout.

A ControlNet is a copy of the U-Net's encoder (``time_embed``, ``label_emb`` for SDXL,
``input_blocks``, ``middle_block``) plus

- ``input_hint_block``: eight 3x3 convs with SiLU between them (indices 0, 2, …, 14) that take the
  hint image at 8× the latent size down to the latent size and ``model_channels`` wide (strides 2 at
  indices 4, 8 and 12); its output is added to the first input block's output;
- ``zero_convs.N.0``: a 1x1 conv per input block, whose outputs are the residuals added to the
  U-Net's skip connections;
- ``middle_block_out.0``: a 1x1 conv after the middle block, the residual added after the U-Net's
  middle block.

``forward`` returns ``{"output": [one residual per input block], "middle": [one]}``: the format
:meth:`nodes.sd.unet.UNetModel.forward` takes as ``control``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nodes.sd.unet import Conv2d, UNetConfig, encoder_blocks, timestep_embedding

# (out channels, stride) of the hint convs after the first; the last goes to model_channels
HINT_CONVS = ((16, 1), (32, 2), (32, 1), (96, 2), (96, 1), (256, 2))


@dataclass(frozen=True)
class ControlNetConfig:
    """A ControlNet: the U-Net config it copies the encoder of, and the hint image's channels."""

    unet: UNetConfig
    hint_channels: int = 3


class ControlNetModel(nn.Module):
    """``forward(x, hint, timesteps, context, y)`` → residuals for the U-Net (see the module doc)."""

    def __init__(self, config: ControlNetConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config.unet
        mc, emb_dim = cfg.model_channels, cfg.model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = None
        if cfg.adm_in_channels:
            self.label_emb = nn.Sequential(
                nn.Sequential(nn.Linear(cfg.adm_in_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)))
        hint: list[nn.Module] = [Conv2d(config.hint_channels, 16, 3, padding=1)]
        ch = 16
        for out, stride in HINT_CONVS:
            hint += [nn.SiLU(), Conv2d(ch, out, 3, padding=1, stride=stride)]
            ch = out
        hint += [nn.SiLU(), Conv2d(ch, mc, 3, padding=1)]
        self.input_hint_block = nn.Sequential(*hint)
        self.input_blocks, widths, self.middle_block = encoder_blocks(cfg)
        self.zero_convs = nn.ModuleList(nn.Sequential(nn.Conv2d(w, w, 1)) for w in widths)
        self.middle_block_out = nn.Sequential(nn.Conv2d(widths[-1], widths[-1], 1))

    @property
    def dtype(self) -> torch.dtype:
        return self.zero_convs[0][0].weight.dtype

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None,
                y: torch.Tensor | None = None) -> dict[str, list[torch.Tensor]]:
        """``x`` the U-Net's input (already scaled), ``hint`` [B, C, 8H, 8W] in 0..1, ``timesteps`` [B]."""
        cfg = self.config.unet
        dtype = self.dtype
        emb = self.time_embed(timestep_embedding(timesteps, cfg.model_channels).to(dtype))
        if self.label_emb is not None:
            if y is None:
                raise ValueError("this ControlNet is for SDXL and needs the model's y (size/pooled conditioning)")
            emb = emb + self.label_emb(y.to(dtype))
        emb_silu = F.silu(emb)
        context = None if context is None else context.to(dtype)
        h = x.to(dtype)
        guided = self.input_hint_block(hint.to(dtype))
        outputs = []
        for i, (block, zero) in enumerate(zip(self.input_blocks, self.zero_convs)):
            h = block(h, emb_silu, context)
            if i == 0:
                h = h + guided
            outputs.append(zero(h))
        h = self.middle_block(h, emb_silu, context)
        return {"output": outputs, "middle": [self.middle_block_out(h)]}
