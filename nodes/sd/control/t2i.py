"""T2I-Adapters (TencentARC) in their original key layout: full (SD1/SD2), full XL, and light.

An adapter turns the hint image into one feature map per U-Net level, added to the U-Net's encoder
(T2I: after the input block that ends the level; the U-Net's ``control["input"]``). It starts with a
pixel unshuffle (8×8, or 16×16 for XL) that folds the image down to the latent size (XL: half of it):

- full: ``conv_in`` (3x3) then ``body.K`` residual blocks, ``nums_rb`` per level (K = level·nums_rb + j);
  a level's first block downsamples (2×2 average pool) on every level but the first (XL: only the
  third) and widens with a 1x1 ``in_conv`` where the width changes; each block is
  x + block2(relu(block1(x))) (block1 3x3, block2 ``ksize``).
- light: ``body.L`` per level: downsample (not the first), 1x1 ``in_conv`` to a quarter of the level's
  width, ``body.J`` residual blocks (3x3, 3x3), 1x1 ``out_conv``.

Where each feature lands (as ComfyUI and diffusers): a level with attention takes it after its last
ResBlock (before the downsampler), a level without attention after the downsampler; XL's fourth
feature goes after the middle block.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nodes.sd.unet import UNetConfig


@dataclass(frozen=True)
class AdapterConfig:
    kind: str  # "full", "full_xl", "light"
    channels: tuple[int, ...]
    nums_rb: int
    cin: int  # the unshuffled input channels (hint channels × unshuffle²)
    ksize: int = 1

    @property
    def unshuffle(self) -> int:
        return 16 if self.kind == "full_xl" else 8

    @property
    def hint_channels(self) -> int:
        return self.cin // self.unshuffle ** 2


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2, 2, ceil_mode=True)


class _Block(nn.Module):
    def __init__(self, in_c: int, out_c: int, down: bool, ksize: int) -> None:
        super().__init__()
        self.down = down
        self.in_conv = nn.Conv2d(in_c, out_c, ksize, 1, ksize // 2) if in_c != out_c else None
        self.block1 = nn.Conv2d(out_c, out_c, 3, 1, 1)
        self.block2 = nn.Conv2d(out_c, out_c, ksize, 1, ksize // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = _pool(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return x + self.block2(F.relu(self.block1(x)))


class _LightResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.block1 = nn.Conv2d(c, c, 3, 1, 1)
        self.block2 = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block2(F.relu(self.block1(x)))


class _Extractor(nn.Module):
    def __init__(self, in_c: int, inter_c: int, out_c: int, nums_rb: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.in_conv = nn.Conv2d(in_c, inter_c, 1)
        self.body = nn.Sequential(*[_LightResBlock(inter_c) for _ in range(nums_rb)])
        self.out_conv = nn.Conv2d(inter_c, out_c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = _pool(x)
        return self.out_conv(self.body(self.in_conv(x)))


class T2IAdapterModel(nn.Module):
    """``forward(hint)`` → one feature map per level (see the module doc)."""

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = cfg = config
        ch = cfg.channels
        if cfg.kind == "light":
            self.body = nn.ModuleList(_Extractor(cfg.cin if i == 0 else ch[i - 1], ch[i] // 4, ch[i], cfg.nums_rb, i > 0)
                                      for i in range(len(ch)))
            return
        self.conv_in = nn.Conv2d(cfg.cin, ch[0], 3, 1, 1)
        blocks = []
        for i in range(len(ch)):
            for j in range(cfg.nums_rb):
                first = j == 0 and i > 0
                down = first and (i == 2 if cfg.kind == "full_xl" else True)
                blocks.append(_Block(ch[i - 1] if first else ch[i], ch[i], down, cfg.ksize))
        self.body = nn.ModuleList(blocks)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, hint: torch.Tensor) -> list[torch.Tensor]:
        x = F.pixel_unshuffle(hint.to(self.dtype), self.config.unshuffle)
        features = []
        if self.config.kind == "light":
            for block in self.body:
                x = block(x)
                features.append(x)
            return features
        x = self.conv_in(x)
        for i in range(len(self.config.channels)):
            for j in range(self.config.nums_rb):
                x = self.body[i * self.config.nums_rb + j](x)
            features.append(x)
        return features


def adapter_residuals(features: list[torch.Tensor], unet: UNetConfig, xl: bool) -> dict[str, list]:
    """The U-Net ``control`` dict for an adapter's features (see the module doc for where they land)."""
    per_level = unet.num_res_blocks + 1
    levels = len(unet.channel_mult)
    inputs: list[torch.Tensor | None] = [None] * (1 + per_level * levels - 1)
    out: dict[str, list] = {"input": inputs}
    rest = list(features)
    if xl:
        out["middle"] = [rest.pop()]
    for level, feature in zip(range(levels), rest):
        index = level * per_level + unet.num_res_blocks  # the level's last ResBlock
        if not unet.transformer_depth[level] and level != levels - 1:
            index += 1  # after the downsampler
        inputs[index] = feature
    return out
