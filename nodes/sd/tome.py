"""Token merging for Stable Diffusion (Bolya & Hoffman 2023; ComfyUI's TomePatchModel).

At the U-Net's full resolution only, self-attention runs on fewer queries: the token grid (w × h)
is cut into 2×2 cells and one token per cell, drawn at random, becomes a destination; the others
are sources. Each source is matched to its most similar destination by cosine similarity of the
attention input, and the r = ⌊N·ratio⌋ best-matched sources are merged into their destinations
(each destination becomes the mean of itself and the sources merged into it). The attention output
of the merged set is "unmerged": destinations and unmerged sources get their own outputs back, each
merged source its destination's. As in ComfyUI, the keys and values are those of all N tokens.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .patches import UNetHooks

STRIDE = 2
Merge = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def destination_mask(w: int, h: int, sx: int, sy: int, generator: torch.Generator, device) -> torch.Tensor:
    """[h·w] boolean: True at the one random destination token of each full sy×sx cell."""
    hsy, wsx = h // sy, w // sx
    pick = torch.randint(sy * sx, size=(hsy, wsx, 1), generator=generator, device=generator.device).to(device)
    cells = torch.zeros(hsy, wsx, sy * sx, device=device, dtype=torch.bool)
    cells.scatter_(2, pick, True)
    grid = torch.zeros(h, w, device=device, dtype=torch.bool)
    grid[:hsy * sy, :wsx * sx] = cells.view(hsy, wsx, sy, sx).transpose(1, 2).reshape(hsy * sy, wsx * sx)
    return grid.reshape(-1)


def bipartite_merge(metric: torch.Tensor, w: int, h: int, r: int, generator: torch.Generator) -> tuple[Merge, Merge]:
    """(merge, unmerge) for tokens ``metric`` [B, N, C] on a w × h grid, merging r sources."""
    batch, n, _ = metric.shape
    if r <= 0 or w == 1 or h == 1:
        return _identity, _identity
    is_dst = destination_mask(w, h, STRIDE, STRIDE, generator, metric.device)
    order = torch.argsort((~is_dst).to(torch.int8), stable=True)  # destinations first, then sources
    n_dst = int(is_dst.sum())
    src_pos, dst_pos = order[n_dst:], order[:n_dst]

    with torch.no_grad():
        unit = metric / metric.norm(dim=-1, keepdim=True)
        scores = unit[:, src_pos] @ unit[:, dst_pos].transpose(-1, -2)
        r = min(len(src_pos), r)
        best, best_dst = scores.max(dim=-1)
        ranked = best.argsort(dim=-1, descending=True)
        kept, merged = ranked[:, r:], ranked[:, :r]                 # indices into the sources
        into = torch.gather(best_dst, 1, merged)                     # destination of each merged source

    def merge(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        src, dst = x[:, src_pos], x[:, dst_pos]
        unmerged = torch.gather(src, 1, kept[..., None].expand(-1, -1, c))
        moving = torch.gather(src, 1, merged[..., None].expand(-1, -1, c))
        dst = dst.scatter_reduce(1, into[..., None].expand(-1, -1, c), moving, reduce="mean")
        return torch.cat([unmerged, dst], dim=1)

    def unmerge(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        n_kept = kept.shape[1]
        unmerged, dst = x[:, :n_kept], x[:, n_kept:]
        out = x.new_zeros(x.shape[0], n, c)
        out[:, dst_pos] = dst
        out.scatter_(1, src_pos[kept][..., None].expand(-1, -1, c), unmerged)
        out.scatter_(1, src_pos[merged][..., None].expand(-1, -1, c), torch.gather(dst, 1, into[..., None].expand(-1, -1, c)))
        return out

    return merge, unmerge


class TokenMerging:
    """TomePatchModel's attn1 hooks: ``merge`` (before the projections) and ``unmerge`` (after)."""

    def __init__(self, ratio: float) -> None:
        self.ratio = float(ratio)

    def merge(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hooks: UNetHooks):
        _, _, height, width = hooks.original_shape
        downsample = int(math.ceil(math.sqrt((height * width) // q.shape[1])))
        merge, unmerge = _identity, _identity
        if downsample <= 1:
            w, h = int(math.ceil(width / downsample)), int(math.ceil(height / downsample))
            merge, unmerge = bipartite_merge(q, w, h, int(q.shape[1] * self.ratio), hooks.run_generator(q.device))
        hooks.scratch(self)["unmerge"] = unmerge
        return merge(q), k, v

    def unmerge(self, out: torch.Tensor, hooks: UNetHooks) -> torch.Tensor:
        return hooks.scratch(self).pop("unmerge", _identity)(out)
