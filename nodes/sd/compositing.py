"""Putting pictures and masks together: the arithmetic of ComfyUI's compositing, mask and blend nodes.

Tensors are channel-first (``[B, C, H, W]``) unless a function says otherwise; masks are ``[B, H, W]``
in 0..1. Every formula here is ComfyUI's (nodes_mask.py, nodes_compositing.py, nodes_post_processing.py,
nodes.py), written out on its own; where ComfyUI has a slip the docstring says what is done instead.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def repeat_to_batch(t: Tensor, batch: int) -> Tensor:
    """``t`` with exactly ``batch`` entries along dim 0: the first ``batch`` of a longer one, a shorter one
    repeated (ComfyUI's ``repeat_to_batch_size``)."""
    if t.shape[0] > batch:
        return t[:batch]
    if t.shape[0] < batch:
        return t.repeat((math.ceil(batch / t.shape[0]),) + (1,) * (t.ndim - 1))[:batch]
    return t


# -- pasting a source onto a destination ----------------------------------------------------------------
def composite(destination: Tensor, source: Tensor, x: int, y: int, mask: Tensor | None = None,
              multiplier: int = 8, resize_source: bool = False) -> Tensor:
    """``source`` pasted onto ``destination`` (both ``[B, C, H, W]``) with its top-left corner at pixel
    (``x``, ``y``) — divided by ``multiplier`` (8 for latents) — through ``mask`` (1 = source).

    As ComfyUI's ImageCompositeMasked/LatentCompositeMasked: the source is first resized to the
    destination (bilinear) if ``resize_source``, then cut or repeated to the destination's batch; the
    mask is resized (bilinear) to the source's size and fitted to the batch the same way; whatever falls
    outside the destination is left out. Returns a new tensor.
    """
    out = destination.clone()
    height, width = destination.shape[-2:]
    if resize_source:
        source = F.interpolate(source, size=(height, width), mode="bilinear")
    source = repeat_to_batch(source.to(destination), destination.shape[0])
    left = min(max(0, x), width * multiplier) // multiplier
    top = min(max(0, y), height * multiplier) // multiplier
    h, w = min(source.shape[-2], height - top), min(source.shape[-1], width - left)
    if h <= 0 or w <= 0:
        return out
    if mask is None:
        weight = torch.ones_like(source[:, :1])
    else:
        weight = F.interpolate(mask.to(destination).reshape(-1, 1, *mask.shape[-2:]), size=source.shape[-2:],
                               mode="bilinear")
        weight = repeat_to_batch(weight, destination.shape[0])
    weight = weight[..., :h, :w]
    region = out[..., top:top + h, left:left + w]
    out[..., top:top + h, left:left + w] = weight * source[..., :h, :w] + (1.0 - weight) * region
    return out


def latent_paste(samples_to: Tensor, samples_from: Tensor, x: int, y: int, feather: int) -> Tensor:
    """ComfyUI's LatentComposite: ``samples_from`` over ``samples_to`` at latent pixel (x, y), cut at the
    edges; with ``feather`` > 0 its edges that lie inside ``samples_to`` ramp in linearly over that many
    latent pixels (weights (t+1)/feather)."""
    out = samples_to.clone()
    height, width = samples_to.shape[-2:]
    source = samples_from[..., :max(0, height - y), :max(0, width - x)]
    h, w = source.shape[-2:]
    if h == 0 or w == 0:
        return out
    if feather == 0:
        out[..., y:y + h, x:x + w] = source
        return out
    weight = torch.ones_like(source[:, :1])
    ramp = torch.arange(1, feather + 1, dtype=source.dtype) / feather
    edges = ((y != 0, 2, False), (y + h < height, 2, True), (x != 0, 3, False), (x + w < width, 3, True))
    for inside, dim, far in edges:
        if inside:
            _ramp_edge(weight, dim, ramp, far)
    out[..., y:y + h, x:x + w] = source * weight + out[..., y:y + h, x:x + w] * (1.0 - weight)
    return out


def _ramp_edge(weight: Tensor, dim: int, ramp: Tensor, far: bool) -> None:
    """Multiply the rows/columns of ``weight`` along ``dim`` nearest one edge by ``ramp`` (ramp[0] at the
    edge itself), in place; a ramp longer than the tensor is cut."""
    n = min(len(ramp), weight.shape[dim])
    shape = [1] * weight.ndim
    shape[dim] = n
    r = ramp[:n].reshape(shape)
    if far:
        weight.narrow(dim, weight.shape[dim] - n, n).mul_(r.flip(dim))
    else:
        weight.narrow(dim, 0, n).mul_(r)


# -- masks -------------------------------------------------------------------------------------------
MASK_OPERATIONS = ("multiply", "add", "subtract", "and", "or", "xor")
_MASK_OPS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "multiply": lambda d, s: d * s,
    "add": lambda d, s: d + s,
    "subtract": lambda d, s: d - s,
    "and": lambda d, s: (d.round().bool() & s.round().bool()).to(d.dtype),
    "or": lambda d, s: (d.round().bool() | s.round().bool()).to(d.dtype),
    "xor": lambda d, s: (d.round().bool() ^ s.round().bool()).to(d.dtype),
}


def mask_composite(destination: Tensor, source: Tensor, x: int, y: int, operation: str) -> Tensor:
    """ComfyUI's MaskComposite: ``operation`` of the destination region under ``source`` (placed at x, y)
    with ``source``; and/or/xor read values rounded to 0/1. The result is clamped to 0..1."""
    out = destination.clone()
    height, width = destination.shape[-2:]
    h, w = min(source.shape[-2], height - y), min(source.shape[-1], width - x)
    if h > 0 and w > 0:
        region = out[:, y:y + h, x:x + w]
        out[:, y:y + h, x:x + w] = _MASK_OPS[operation](region, source[:, :h, :w])
    return out.clamp(0.0, 1.0)


def feather_mask(mask: Tensor, left: int, top: int, right: int, bottom: int) -> Tensor:
    """``mask [B, H, W]`` fading to its edges: the k-th row/column from an edge (k = 0 at the edge) is
    multiplied by (k+1)/n for the n given for that edge (n capped at the mask's size).

    ComfyUI's loop indexes the right and bottom edges with ``-k``, so for k = 0 it scales the first
    column/row instead of the last one; here each edge gets its own ramp, as the node describes.
    """
    out = mask.clone()
    height, width = out.shape[-2:]
    for n, dim, far in ((left, 2, False), (right, 2, True), (top, 1, False), (bottom, 1, True)):
        n = min(n, width if dim == 2 else height)
        if n > 0:
            _ramp_edge(out, dim, torch.arange(1, n + 1, dtype=out.dtype) / n, far)
    return out


def outpaint_padding(image: Tensor, left: int, top: int, right: int, bottom: int, feathering: int
                     ) -> tuple[Tensor, Tensor]:
    """ComfyUI's ImagePadForOutpaint on ``image [B, H, W, C]``: the image on a larger grey (0.5) canvas,
    and a mask ``[1, H', W']`` that is 1 on the new border and, inside the old image, (1 − d/f)² within
    f = ``feathering`` pixels of a padded side (d = distance to that side; no feathering unless 2f is
    smaller than both sides of the image)."""
    b, h, w, c = image.shape
    canvas = torch.full((b, h + top + bottom, w + left + right, c), 0.5, dtype=torch.float32)
    canvas[:, top:top + h, left:left + w] = image
    mask = torch.ones((h + top + bottom, w + left + right), dtype=torch.float32)
    inner = torch.zeros((h, w), dtype=torch.float32)
    if 0 < feathering and feathering * 2 < h and feathering * 2 < w:
        rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
        unpadded = torch.full((h, w), float(h + w))  # a side that was not padded is never near
        d = torch.stack([rows if top else unpadded, h - rows if bottom else unpadded,
                         cols if left else unpadded, w - cols if right else unpadded]).amin(0)
        inner = torch.where(d < feathering, ((feathering - d) / feathering) ** 2, inner)
    mask[top:top + h, left:left + w] = inner
    return canvas, mask.unsqueeze(0)


# -- blending ------------------------------------------------------------------------------------------
BLEND_MODES = ("normal", "multiply", "screen", "overlay", "soft_light", "difference")


def _soft_light_d(a: Tensor) -> Tensor:
    return torch.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, torch.sqrt(a))


_BLENDS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "normal": lambda a, b: b,
    "multiply": lambda a, b: a * b,
    "screen": lambda a, b: 1 - (1 - a) * (1 - b),
    "overlay": lambda a, b: torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b)),
    "soft_light": lambda a, b: torch.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (_soft_light_d(a) - a)),
    "difference": lambda a, b: a - b,
}


def blend_images(image1: Tensor, image2: Tensor, blend_factor: float, blend_mode: str) -> Tensor:
    """ComfyUI's ImageBlend on same-size images: image1·(1−f) + mode(image1, image2)·f, clamped to 0..1.
    (ComfyUI's "difference" is image1 − image2, not its absolute value.)"""
    blended = _BLENDS[blend_mode](image1, image2)
    return torch.clamp(image1 * (1 - blend_factor) + blended * blend_factor, 0.0, 1.0)


def match_alpha(destination: Tensor, source: Tensor) -> tuple[Tensor, Tensor]:
    """ComfyUI's ``image_alpha_fix`` on ``[..., C]`` images: a source with more channels loses the extra
    ones; a source with fewer gets an opaque alpha channel."""
    if destination.shape[-1] < source.shape[-1]:
        return destination, source[..., :destination.shape[-1]]
    if destination.shape[-1] > source.shape[-1]:
        return destination, F.pad(source, (0, 1), value=1.0)
    return destination, source


def interpolate_latents(s1: Tensor, s2: Tensor, ratio: float) -> Tensor:
    """ComfyUI's LatentInterpolate: per latent pixel, the directions (over channels) are blended by
    ``ratio`` (s1's share) and renormalised, the lengths blended linearly. Zero vectors count as zero
    direction. (ComfyUI's norms drop the channel dim, so it breaks on batches of more than one latent;
    here each latent of the batch gets its own norms.)"""
    m1 = torch.linalg.vector_norm(s1, dim=1, keepdim=True)
    m2 = torch.linalg.vector_norm(s2, dim=1, keepdim=True)
    t = torch.nan_to_num(s1 / m1) * ratio + torch.nan_to_num(s2 / m2) * (1.0 - ratio)
    direction = torch.nan_to_num(t / torch.linalg.vector_norm(t, dim=1, keepdim=True))
    return direction * (m1 * ratio + m2 * (1.0 - ratio))


# -- Porter-Duff -------------------------------------------------------------------------------------
# Each mode: (source alpha sa, source colour s, destination alpha da, destination colour d), colours
# premultiplied by their alpha -> (alpha, premultiplied colour). ComfyUI's table (nodes_compositing.py):
# the twelve Porter-Duff operators plus ADD, DARKEN, LIGHTEN, MULTIPLY, OVERLAY and SCREEN.
_PorterDuff = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def _union(sa: Tensor, da: Tensor) -> Tensor:
    return sa + da - sa * da


PORTER_DUFF: dict[str, _PorterDuff] = {
    "ADD": lambda sa, s, da, d: ((sa + da).clamp(0, 1), (s + d).clamp(0, 1)),
    "CLEAR": lambda sa, s, da, d: (torch.zeros_like(da), torch.zeros_like(d)),
    "DARKEN": lambda sa, s, da, d: (_union(sa, da), (1 - da) * s + (1 - sa) * d + torch.minimum(s, d)),
    "DST": lambda sa, s, da, d: (da, d),
    "DST_ATOP": lambda sa, s, da, d: (sa, sa * d + (1 - da) * s),
    "DST_IN": lambda sa, s, da, d: (sa * da, d * sa),
    "DST_OUT": lambda sa, s, da, d: ((1 - sa) * da, (1 - sa) * d),
    "DST_OVER": lambda sa, s, da, d: (da + (1 - da) * sa, d + (1 - da) * s),
    "LIGHTEN": lambda sa, s, da, d: (_union(sa, da), (1 - da) * s + (1 - sa) * d + torch.maximum(s, d)),
    "MULTIPLY": lambda sa, s, da, d: (sa * da, s * d),
    "OVERLAY": lambda sa, s, da, d: (_union(sa, da), torch.where(2 * d < da, 2 * s * d,
                                                                 sa * da - 2 * (da - s) * (sa - d))),
    "SCREEN": lambda sa, s, da, d: (_union(sa, da), s + d - s * d),
    "SRC": lambda sa, s, da, d: (sa, s),
    "SRC_ATOP": lambda sa, s, da, d: (da, da * s + (1 - sa) * d),
    "SRC_IN": lambda sa, s, da, d: (sa * da, s * da),
    "SRC_OUT": lambda sa, s, da, d: ((1 - da) * sa, (1 - da) * s),
    "SRC_OVER": lambda sa, s, da, d: (sa + (1 - sa) * da, s + (1 - sa) * d),
    "XOR": lambda sa, s, da, d: ((1 - da) * sa + (1 - sa) * da, (1 - da) * s + (1 - sa) * d),
}


def porter_duff(source: Tensor, source_mask: Tensor, destination: Tensor, destination_mask: Tensor,
                mode: str) -> tuple[Tensor, Tensor]:
    """Composite ``source`` over/in/... ``destination`` (``[..., C]`` images) by Porter-Duff ``mode``.

    The alphas come as MASKs (``[..., 1]``, 1 = transparent, as Load Image gives them); the result is the
    straight (not premultiplied) colour, clamped to 0..1 and black where nothing is left (alpha ≤ 1e-5),
    and its mask (1 − alpha)."""
    sa, da = 1 - source_mask, 1 - destination_mask
    alpha, colour = PORTER_DUFF[mode](sa, source * sa, da, destination * da)
    colour = torch.where(alpha > 1e-5, colour / alpha, torch.zeros_like(colour)).clamp(0, 1)
    return colour, 1 - alpha
