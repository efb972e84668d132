"""Image filters of ComfyUI's post-processing nodes: Gaussian blur and sharpening, morphology, growing
and shrinking masks, Canny edges and colour quantisation.

Images are ``[B, H, W, C]`` floats in 0..1 and masks ``[B, H, W]``, as the nodes pass them.

- Blur and sharpen use ComfyUI's kernel: a Gaussian over ``linspace(-1, 1, 2r+1)`` with standard
  deviation ``sigma`` (so ``sigma`` is in units of the radius: ``sigma·r`` pixels), normalised to sum 1,
  on an image mirrored at its borders without repeating the edge pixel (OpenCV's BORDER_REFLECT_101).
  The kernel is separable, so it runs as two 1-D passes.
- Morphology takes a flat square structuring element of side k anchored at k//2 (reflected for
  dilation, as kornia — whose functions ComfyUI's node used — and mathematical morphology do) and
  ignores pixels outside the image (kornia's "geodesic" border), computed with max-pooling in two
  1-D passes (a max over a square is a max over rows of maxes over columns: exact).
- Canny is kornia's ``canny``, as ComfyUI's node calls it.
- Quantisation is Pillow's, as ComfyUI's node calls it, with its ordered (Bayer) dithering.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


# -- Gaussian blur and sharpening --------------------------------------------------------------------
def gaussian_kernel_1d(radius: int, sigma: float) -> Tensor:
    """The 1-D factor of ComfyUI's ``gaussian_kernel(2·radius+1, sigma)`` (float64, sums to 1)."""
    x = torch.linspace(-1.0, 1.0, 2 * radius + 1, dtype=torch.float64)
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def reflect_indices(size: int, radius: int) -> Tensor:
    """Source indices of positions ``-radius .. size+radius-1`` mirrored into ``0 .. size-1`` without
    repeating the edge (…2 1 | 0 1 2 … n-1 | n-2 …), for any radius, also larger than ``size``."""
    positions = torch.arange(-radius, size + radius)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions.remainder(period)
    return torch.where(folded >= size, period - folded, folded)


def _separable(x: Tensor, kernel: Tensor) -> Tensor:
    """``x [N, C, H, W]`` filtered by ``kernel ⊗ kernel`` (1-D, length 2r+1) on reflect-101 borders."""
    r = (len(kernel) - 1) // 2
    channels = x.shape[1]
    k = kernel.to(x.dtype)
    x = x.index_select(2, reflect_indices(x.shape[2], r).to(x.device))
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    x = x.index_select(3, reflect_indices(x.shape[3], r).to(x.device))
    return F.conv2d(x, k.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)


def gaussian_blur(image: Tensor, radius: int, sigma: float) -> Tensor:
    """ComfyUI's ImageBlur: ``image [B, H, W, C]`` blurred with its Gaussian (every channel, alpha too)."""
    if radius <= 0:
        return image
    x = image.movedim(-1, 1)
    return _separable(x, gaussian_kernel_1d(radius, sigma)).movedim(1, -1)


def sharpen(image: Tensor, radius: int, sigma: float, alpha: float) -> Tensor:
    """ComfyUI's ImageSharpen: (1 + 10·alpha)·image − 10·alpha·blur(image), clamped to 0..1 (its kernel
    is −10·alpha·G with 1 + 10·alpha added at the centre)."""
    if radius <= 0:
        return image
    blurred = gaussian_blur(image, radius, sigma)
    return torch.clamp((1.0 + 10.0 * alpha) * image - 10.0 * alpha * blurred, 0.0, 1.0)


# -- morphology ------------------------------------------------------------------------------------------
def _max_filter(x: Tensor, before: int, after: int) -> Tensor:
    """Max of ``x [N, C, H, W]`` over the window [i−before, i+after] in both directions; pixels outside the
    image do not take part."""
    size = before + after + 1
    if size == 1:
        return x
    x = F.pad(x, (0, 0, before, after), value=-math.inf)
    x = F.max_pool2d(x, (size, 1), stride=1)
    x = F.pad(x, (before, after), value=-math.inf)
    return F.max_pool2d(x, (1, size), stride=1)


def dilate(x: Tensor, k: int) -> Tensor:
    """Grey dilation of ``x [N, C, H, W]`` by a flat k×k square anchored at k//2 (reflected)."""
    return _max_filter(x, k - 1 - k // 2, k // 2)


def erode(x: Tensor, k: int) -> Tensor:
    """Grey erosion of ``x [N, C, H, W]`` by a flat k×k square anchored at k//2."""
    return -_max_filter(-x, k // 2, k - 1 - k // 2)


def morphology(image: Tensor, operation: str, kernel_size: int) -> Tensor:
    """ComfyUI's Morphology node on ``image [B, H, W, C]`` (each channel on its own)."""
    x, k = image.movedim(-1, 1), kernel_size
    if operation == "erode":
        out = erode(x, k)
    elif operation == "dilate":
        out = dilate(x, k)
    elif operation == "open":
        out = dilate(erode(x, k), k)
    elif operation == "close":
        out = erode(dilate(x, k), k)
    elif operation == "gradient":
        out = dilate(x, k) - erode(x, k)
    elif operation == "top_hat":
        out = x - dilate(erode(x, k), k)
    elif operation == "bottom_hat":
        out = erode(dilate(x, k), k) - x
    else:
        raise ValueError(f"unknown morphology operation {operation!r}; choose erode, dilate, open, close, "
                         "gradient, top_hat or bottom_hat")
    return out.movedim(1, -1)


def grow_mask(mask: Tensor, expand: int, tapered_corners: bool) -> Tensor:
    """ComfyUI's GrowMask: ``mask [B, H, W]`` dilated (``expand`` > 0) or eroded (< 0) ``|expand|`` times by
    a 3×3 cross (``tapered_corners``) or square, pixels outside the mask taking no part.

    Repeating the square k times is one square of side 2k+1; repeating the cross k times is a diamond
    (|dy| + |dx| ≤ k), done by repeating. Steps beyond the mask's size change nothing and are skipped.
    """
    steps = abs(expand)
    if steps == 0:
        return mask.clone()
    sign = 1.0 if expand > 0 else -1.0
    x = mask.unsqueeze(1) * sign
    if not tapered_corners:
        steps = min(steps, max(mask.shape[-2:]))
        x = _max_filter(x, steps, steps)
    else:
        for _ in range(min(steps, mask.shape[-2] + mask.shape[-1])):
            vertical = F.max_pool2d(F.pad(x, (0, 0, 1, 1), value=-math.inf), (3, 1), stride=1)
            horizontal = F.max_pool2d(F.pad(x, (1, 1), value=-math.inf), (1, 3), stride=1)
            x = torch.maximum(vertical, horizontal)
    return (x * sign).squeeze(1)


# -- Canny edges -------------------------------------------------------------------------------------------
def canny_edges(image: Tensor, low_threshold: float, high_threshold: float) -> Tensor:
    """ComfyUI's Canny node: kornia's ``canny`` (grey conversion, 5×5 Gaussian with σ = 1, unnormalised
    Sobel, non-maximum suppression, hysteresis) with its default settings; the thresholds compare against
    that gradient's magnitude (a unit step edge reaches about 2.6). Returns white edges on black,
    ``[B, H, W, 3]``."""
    from kornia.filters import canny

    if low_threshold > high_threshold:
        raise ValueError(f"low_threshold {low_threshold} is above high_threshold {high_threshold}; the low "
                         "threshold must not exceed the high one")
    x = image[..., :3].movedim(-1, 1).float()
    _, edges = canny(x, low_threshold, high_threshold)
    return edges.repeat(1, 3, 1, 1).movedim(1, -1)


# -- quantisation -------------------------------------------------------------------------------------------
def bayer_matrix(order: int) -> Tensor:
    """ComfyUI's normalised Bayer threshold matrix of side ``order`` (a power of 2), entries in (−½, ½):
    M₁ = [[0]], M₂ₙ = [[M−1.5, M+0.5], [M+1.5, M−0.5]]/4ⁿ with M = 4ⁿ·Mₙ (n = log₂ of the side)."""
    m = torch.zeros((1, 1), dtype=torch.float64)
    for n in range(1, int(math.log2(order)) + 1):
        q = 4 ** n
        big = q * m
        m = torch.cat([torch.cat([big - 1.5, big + 0.5], 1), torch.cat([big + 1.5, big - 0.5], 1)], 0) / q
    return m


def quantize(image: Tensor, colors: int, dither: str) -> Tensor:
    """ComfyUI's ImageQuantize: each image reduced to a palette of at most ``colors`` colours chosen by
    Pillow (median cut), mapped with no dithering, Floyd-Steinberg, or ordered Bayer dithering of the
    given size. Pixels are read as ComfyUI reads them (×255, truncated); alpha passes through and grey
    images come out RGB."""
    import numpy as np
    from PIL import Image

    rgb = image[..., :3] if image.shape[-1] >= 3 else image[..., :1].expand(*image.shape[:-1], 3)
    out = torch.empty(rgb.shape, dtype=torch.float32)
    for b in range(rgb.shape[0]):
        pixels = (rgb[b].detach().cpu().float().clamp(0, 1) * 255).to(torch.uint8).numpy()
        picture = Image.fromarray(pixels, mode="RGB")
        palette = picture.quantize(colors=colors)
        if dither.startswith("bayer"):
            mapped = _bayer_dither(pixels, palette, int(dither.split("-")[1]))
        else:
            method = Image.Dither.FLOYDSTEINBERG if dither == "floyd-steinberg" else Image.Dither.NONE
            mapped = picture.quantize(palette=palette, dither=method)
        out[b] = torch.from_numpy(np.asarray(mapped.convert("RGB"), dtype=np.float32) / 255.0)
    if image.shape[-1] == 4:
        out = torch.cat([out, image[..., 3:].float().cpu()], -1)
    return out


def _bayer_dither(pixels, palette, order: int):
    """Ordered dithering as ComfyUI's: add spread·M + ½ (spread = 512 / palette size) tiled over the
    image, clamp, truncate to bytes, map to the nearest palette colour."""
    import numpy as np
    from PIL import Image

    spread = 2 * 256 / (len(palette.getpalette()) // 3)
    threshold = spread * bayer_matrix(order) + 0.5
    h, w = pixels.shape[:2]
    tiled = threshold.repeat(math.ceil(h / order), math.ceil(w / order))[:h, :w, None]
    # summed in float64 and stored in float32 before truncating, as ComfyUI's in-place add does
    shifted = (torch.from_numpy(pixels.astype(np.float64)) + tiled).float().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(shifted.numpy(), mode="RGB").quantize(palette=palette, dither=Image.Dither.NONE)
