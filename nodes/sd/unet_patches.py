"""U-Net model patches: FreeU, Kohya's deep shrink, HyperTile (ToMe is in tome.py).

FreeU (Si et al. 2023), before the output blocks whose input has 4× or 2× the base channel count
(the two deepest decoder levels of SD1/SD2/SDXL): the first half of the backbone features h is
multiplied by b (FreeU_V2: by 1 + (b − 1)·m̂, m̂ the channel-mean of h min-max normalised per
sample over the pixels), and the skip features are Fourier-filtered — their centred 2-D spectrum
multiplied by s inside the 2×2 low-frequency square around the centre (threshold 1).

Deep shrink (kohya-ss "Deep Shrink"; ComfyUI's PatchModelAddDownscale): while start_percent ≤
progress ≤ end_percent (as sigmas), the output of input block `block_number` is resized by
1/downscale_factor (before or after its skip is kept), and an output block whose input is smaller
than its skip has the input resized back to the skip's size.

HyperTile (ComfyUI's version of tfernd/HyperTile): self-attention at the U-Net's full resolution
(and `max_depth` levels below) splits its queries into nh × nw tiles of about tile_size/8 latent
pixels, each a batch row of its own; nh and nw are drawn among the `swap_size` largest tile counts
that keep tiles at least that big. As in ComfyUI the keys and values are not tiled: each query tile
attends to the matching run of consecutive tokens of the keys and values.
"""
from __future__ import annotations

import math

import torch

from .patches import UNetHooks
from .resize import common_upscale

FREEU_THRESHOLD = 1


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """``x`` [B, C, H, W] with its centred spectrum scaled by ``scale`` in the central
    (2·threshold)² square (FreeU's skip filter)."""
    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    height, width = freq.shape[-2:]
    mask = torch.ones(freq.shape, device=x.device)
    row, col = height // 2, width // 2
    mask[..., row - threshold:row + threshold, col - threshold:col + threshold] = scale
    filtered = torch.fft.ifftn(torch.fft.ifftshift(freq * mask, dim=(-2, -1)), dim=(-2, -1)).real
    return filtered.to(x.dtype)


class FreeU:
    """FreeU's output-block patch; ``version`` 1 scales by b, 2 by the structure-aware 1 + (b−1)·m̂."""

    def __init__(self, model_channels: int, b1: float, b2: float, s1: float, s2: float, version: int = 1) -> None:
        self.scales = {model_channels * 4: (float(b1), float(s1)), model_channels * 2: (float(b2), float(s2))}
        self.version = version

    def __call__(self, h: torch.Tensor, skip: torch.Tensor, hooks: UNetHooks) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self.scales.get(int(h.shape[1]))
        if scale is None:
            return h, skip
        backbone, skip_scale = scale
        half = h.shape[1] // 2
        factor = backbone if self.version == 1 else (backbone - 1) * _normalised_mean(h) + 1
        h = torch.cat([h[:, :half] * factor, h[:, half:]], dim=1)
        return h, fourier_filter(skip, FREEU_THRESHOLD, skip_scale)


def _normalised_mean(h: torch.Tensor) -> torch.Tensor:
    """The channel mean of ``h`` [B, 1, H, W], min-max normalised over each sample's pixels; 1 where it is
    constant (e.g. a 1×1 level of a small latent, where ComfyUI's 0/0 gives NaN)."""
    mean = h.mean(1, keepdim=True)
    flat = mean.reshape(mean.shape[0], -1)
    low = flat.min(dim=-1).values.view(-1, 1, 1, 1)
    high = flat.max(dim=-1).values.view(-1, 1, 1, 1)
    spread = high - low
    return torch.where(spread > 0, (mean - low) / torch.where(spread > 0, spread, 1), torch.ones_like(mean))


class DeepShrink:
    """PatchModelAddDownscale's two hooks: ``input_patch`` (for the input block hook, before or after the
    skip) and ``output_patch`` (the output block hook)."""

    def __init__(self, block_number: int, downscale_factor: float, sigma_start: float, sigma_end: float,
                 downscale_method: str, upscale_method: str) -> None:
        self.block_number, self.factor = int(block_number), float(downscale_factor)
        self.sigma_start, self.sigma_end = float(sigma_start), float(sigma_end)
        self.downscale_method, self.upscale_method = downscale_method, upscale_method

    def input_patch(self, h: torch.Tensor, hooks: UNetHooks) -> torch.Tensor:
        if hooks.block[1] != self.block_number:
            return h
        sigma = float(hooks.sigmas[0])
        if not self.sigma_end <= sigma <= self.sigma_start:
            return h
        width, height = round(h.shape[-1] / self.factor), round(h.shape[-2] / self.factor)
        return common_upscale(h, width, height, self.downscale_method)

    def output_patch(self, h: torch.Tensor, skip: torch.Tensor, hooks: UNetHooks) -> tuple[torch.Tensor, torch.Tensor]:
        if h.shape[2] != skip.shape[2]:
            h = common_upscale(h, skip.shape[-1], skip.shape[-2], self.upscale_method)
        return h, skip


def random_divisor(value: int, min_value: int, max_options: int, generator: torch.Generator) -> int:
    """One of the ``max_options`` largest counts n with value/n ≥ min_value (n divides value); as in
    HyperTile, the draw is over all but the last of them."""
    min_value = min(min_value, value)
    divisors = [i for i in range(min_value, value + 1) if value % i == 0]
    counts = [value // i for i in divisors[:max_options]]
    if len(counts) > 1:
        return counts[int(torch.randint(0, len(counts) - 1, (1,), generator=generator))]
    return counts[0]


class HyperTile:
    """HyperTile's attn1 hooks: ``tile`` (before the projections) and ``untile`` (after)."""

    def __init__(self, tile_size: int, swap_size: int, max_depth: int, scale_depth: bool) -> None:
        self.latent_tile = max(32, int(tile_size)) // 8
        self.swap_size, self.max_depth, self.scale_depth = int(swap_size), int(max_depth), bool(scale_depth)

    def tile(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hooks: UNetHooks):
        shape = hooks.original_shape
        levels = [(shape[-2] / 2**i) * (shape[-1] / 2**i) for i in range(self.max_depth + 1)]
        tokens = q.shape[-2]
        if tokens not in levels:
            return q, k, v
        aspect = shape[-1] / shape[-2]
        rows, cols = round(math.sqrt(tokens * aspect)), round(math.sqrt(tokens / aspect))  # ComfyUI's order
        if rows * cols != tokens:  # an odd-sized latent whose level is not a whole grid: leave it
            return q, k, v
        factor = 2 ** levels.index(tokens) if self.scale_depth else 1
        generator = hooks.run_generator(q.device)
        nh = random_divisor(rows, self.latent_tile * factor, self.swap_size, generator)
        nw = random_divisor(cols, self.latent_tile * factor, self.swap_size, generator)
        if nh * nw > 1:
            b, _, c = q.shape
            q = q.reshape(b, nh, rows // nh, nw, cols // nw, c).transpose(2, 3).reshape(b * nh * nw, -1, c)
            hooks.scratch(self)["tiles"] = (nh, nw, rows, cols)
        return q, k, v

    def untile(self, out: torch.Tensor, hooks: UNetHooks) -> torch.Tensor:
        tiles = hooks.scratch(self).pop("tiles", None)
        if tiles is None:
            return out
        nh, nw, rows, cols = tiles
        c = out.shape[-1]
        out = out.reshape(-1, nh, nw, rows // nh, cols // nw, c).transpose(2, 3)
        return out.reshape(out.shape[0], -1, c)
