"""Guidance by a degraded second prediction: Self-Attention Guidance and Perturbed-Attention Guidance.

SAG (Hong et al. 2023), as ComfyUI applies it: the middle block's first self-attention layer records
its attention map A while the negative prompt is predicted. A pixel is "salient" where the summed
attention it receives, averaged over heads, exceeds 1 (Σ_i mean_h A[h, i, j] > 1). After CFG:

    Û   = blur(U)·M + U·(1 − M)            (Gaussian, 9×9, σ = blur_sigma; M the salient mask)
    S   = D_negative(Û + x − U; σ)          (the negative prompt again, on the degraded latent)
    D  ← D + scale·(Û − S)

PAG (Ahn et al. 2024): the positive prompt is predicted again with the middle block's self-attention
made the identity (softmax(qkᵀ) replaced by I, so each token keeps its own value): P̃; then
D ← D + scale·(C − P̃).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .attention import attention
from .patches import GuidanceStep, ModelPatches, UNetHooks

SAG_THRESHOLD = 1.0
SAG_KERNEL = 9


def attention_with_scores(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(output [B, Nq, heads·D], attention weights [B·heads, Nq, Nk]) of scaled dot-product attention
    (weights in float32)."""
    b, nq, inner = q.shape
    d = inner // heads
    q, k, v = (t.unflatten(-1, (heads, d)).transpose(1, 2).reshape(b * heads, -1, d) for t in (q, k, v))
    weights = (torch.bmm(q.float(), k.float().transpose(1, 2)) * d**-0.5).softmax(dim=-1)
    out = torch.bmm(weights.to(v.dtype), v)
    return out.reshape(b, heads, nq, d).transpose(1, 2).reshape(b, nq, inner), weights


def _grid(total: int, height: int, width: int) -> tuple[int, int]:
    """The (rows, columns) of a token grid of ``total`` tokens for a latent of height×width: the divisor
    of ``total`` nearest √(total·height/width) (ComfyUI's search)."""
    guess = round(math.sqrt((height / width) * total))
    for i in range(max(1, math.floor(math.sqrt(total) / 2))):  # ComfyUI searches none below 4 tokens
        for rows in (guess + i, max(1, guess - i)):
            if total % rows == 0:
                return rows, total // rows
    raise ValueError(f"SelfAttentionGuidance: cannot lay {total} attention tokens out as a grid for a "
                     f"{height}×{width} latent")


def blur_map(x0: torch.Tensor, scores: torch.Tensor, blur_sigma: float, threshold: float = SAG_THRESHOLD) -> torch.Tensor:
    """``x0`` blurred where the attention ``scores`` [B·heads, N, N] mark salient tokens."""
    from kornia.filters import gaussian_blur2d

    b, _, height, width = x0.shape
    total = scores.shape[-1]
    salient = scores.reshape(b, -1, scores.shape[-2], total).mean(1).sum(1) > threshold
    rows, cols = _grid(total, height, width)
    mask = F.interpolate(salient.reshape(b, 1, rows, cols).to(x0.dtype), (height, width))
    if blur_sigma <= 0:  # no blur (ComfyUI's kernel is 0/0 there)
        return x0
    blurred = gaussian_blur2d(x0, (SAG_KERNEL, SAG_KERNEL), (blur_sigma, blur_sigma), border_type="reflect")
    return blurred * mask + x0 * (1 - mask)


class SelfAttentionGuidance:
    """The SAG patch: an attention replacement that records the negative prompt's middle-block map,
    and a post-CFG hook that predicts again on the blurred latent."""

    def __init__(self, scale: float, blur_sigma: float) -> None:
        self.scale, self.blur_sigma = float(scale), float(blur_sigma)

    def patches(self, patches: ModelPatches) -> ModelPatches:
        patches = patches.add(post_cfg=self.post_cfg, disable_cfg1_optimization=True)
        return patches.replace_attention("attn1", self.attend_and_record, "middle", 0, 0)

    def attend_and_record(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hooks: UNetHooks) -> torch.Tensor:
        heads, chunks = hooks.n_heads, hooks.cond_or_uncond
        if 1 not in chunks:
            return attention(q, k, v, heads)
        out, weights = attention_with_scores(q, k, v, heads)
        per_chunk = heads * (q.shape[0] // len(chunks))
        index = chunks.index(1)
        hooks.scratch(self)["scores"] = weights[per_chunk * index:per_chunk * (index + 1)]
        return out

    def post_cfg(self, step: GuidanceStep) -> torch.Tensor:
        denoised = step.denoised
        scores = step.run.scratch(self).get("scores")
        if scores is None or min(denoised.shape[2:]) <= 4:  # no negative prompt ran, or too small to pad
            return denoised
        uncond = step.uncond_denoised
        degraded = blur_map(uncond, scores, self.blur_sigma)
        (again,) = step.run.predict([step.conds[1]], degraded + step.input - uncond, step.sigma)
        return denoised + (degraded - again) * self.scale


def identity_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hooks: UNetHooks) -> torch.Tensor:
    """Attention whose weights are the identity: every token keeps its own value."""
    return v


class PerturbedAttentionGuidance:
    """The PAG post-CFG hook: the positive prompt again with identity self-attention in the middle block."""

    def __init__(self, scale: float) -> None:
        self.scale = float(scale)

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        if self.scale == 0:
            return step.denoised
        perturbed = step.patches.replace_attention("attn1", identity_attention, "middle", 0)
        (again,) = step.run.predict([step.conds[0]], step.input, step.sigma, patches=perturbed)
        return step.denoised + (step.cond_denoised - again) * self.scale
