"""Multi-head attention on packed ``[batch, tokens, heads * head_dim]`` tensors.

The U-Net, the VAE's mid-block attention and the CLIP text encoders all project queries, keys and
values with their own linear layers and then need the same thing: split the channels into heads,
run ``torch.nn.functional.scaled_dot_product_attention`` (which picks the fastest kernel for the
device and dtype, and accumulates the softmax in float32 for half types), and merge the heads back.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> torch.Tensor:
    """Scaled dot-product attention of packed tensors.

    ``q`` is ``[B, Nq, heads*D]``, ``k`` and ``v`` are ``[B, Nk, heads*D]``; returns ``[B, Nq, heads*D]``.
    ``mask`` (boolean "may attend", or additive float) broadcasts to ``[B, heads, Nq, Nk]``.
    The scale is ``1/sqrt(D)``, as in every Stable Diffusion component.
    """
    b, nq, inner = q.shape
    d = inner // heads
    q, k, v = (t.unflatten(-1, (heads, d)).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    return out.transpose(1, 2).reshape(b, nq, inner)
