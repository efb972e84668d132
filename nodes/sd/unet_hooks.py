"""The U-Net's transformer block when model patches hook into attention (nodes/sd/patches.py).

`BasicTransformerBlock.forward` hands over to `hooked_transformer_block` when it is called with a
`UNetHooks`; without hooks the block keeps its own fused code path. The order is ComfyUI's:

    n = norm1(x); attn1_patch(n, context=n, value=n) → q_in, k_in, v_in
    attention — or the attn1 replacement for this (block, depth index), given the projected q, k, v
    attn1_output_patch(out) after the output projection; x = out + x
    the same for cross attention (attn2_*), whose k_in and v_in are the text context
    x = ff(norm3(x)) + x

When a patch hands back queries of another batch size than the keys (HyperTile tiles the queries
only), the keys and values are viewed as that many consecutive chunks, as ComfyUI's attention does.
"""
from __future__ import annotations

import torch

from .attention import attention
from .patches import UNetHooks


def hooked_transformer_block(block, x: torch.Tensor, context: torch.Tensor | None, hooks: UNetHooks) -> torch.Tensor:
    """A `BasicTransformerBlock`'s forward with the patches' attention hooks."""
    if not hooks.patches.attention_hooks:
        return block(x, context)
    x = _attend(block.attn1, "attn1", block.norm1(x), None, hooks) + x
    x = _attend(block.attn2, "attn2", block.norm2(x), context, hooks) + x
    return block.ff(block.norm3(x)).add_(x)


def _attend(attn, which: str, n: torch.Tensor, context: torch.Tensor | None, hooks: UNetHooks) -> torch.Tensor:
    patches = hooks.patches
    hooks.n_heads, hooks.dim_head = attn.heads, attn.to_q.out_features // attn.heads
    before = patches.attn1_patch if which == "attn1" else patches.attn2_patch
    value = None
    if before:
        context = n if context is None else context
        value = context
        for fn in before:
            n, context, value = fn(n, context, value, hooks)
    source = n if context is None else context
    q, k, v = attn.to_q(n), attn.to_k(source), attn.to_v(source if value is None else value)
    replacement = patches.attention_replacement(which, hooks.block, hooks.block_index)
    if replacement is not None:
        out = replacement(q, k, v, hooks)
    else:
        out = attention(q, *_batch_like(q, k, v), attn.heads)
    out = attn.to_out[0](out)
    for fn in patches.attn1_output_patch if which == "attn1" else patches.attn2_output_patch:
        out = fn(out, hooks)
    return out


def _batch_like(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values viewed with the queries' batch size (consecutive token chunks per row)."""
    if k.shape[0] == q.shape[0]:
        return k, v
    rows = q.shape[0]
    return k.reshape(rows, -1, k.shape[-1]), v.reshape(rows, -1, v.shape[-1])
