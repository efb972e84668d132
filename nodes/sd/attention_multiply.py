"""Attention-multiply weight patches: scale the query, key, value and output projections of the U-Net's
self- or cross-attention layers, or of the text encoders' self-attention (ComfyUI's
UNetSelfAttentionMultiply, UNetCrossAttentionMultiply, CLIPAttentionMultiply).

Each projection's weight and bias become factor·W (a `WeightPatch` with strength_model = factor and
no delta), applied while the model is in use. OpenCLIP encoders (SD2, SDXL's G) keep q, k and v in one
``in_proj`` matrix: its three thirds of rows are scaled separately.
"""
from __future__ import annotations

import re

from torch import nn

from .patches import WeightPatch

PROJECTIONS = ("q", "k", "v", "out")
_UNET_SUFFIX = {"q": ("to_q",), "k": ("to_k",), "v": ("to_v",), "out": ("to_out.0",)}
_CLIP_SUFFIX = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "out": "self_attn.out_proj"}
_OPEN_CLIP_QKV = re.compile(r".*\.attn\.in_proj_(weight|bias)")
_OPEN_CLIP_OUT = re.compile(r".*\.attn\.out_proj\.(weight|bias)")


def _scaled(module: str, key: str, factor: float, rows: tuple[int, int] | None = None) -> list[WeightPatch]:
    return [] if factor == 1.0 else [WeightPatch(module, key, None, 0.0, float(factor), rows)]


def unet_attention_patches(unet: nn.Module, which: str, factors: dict[str, float]) -> list[WeightPatch]:
    """Weight patches scaling the ``which`` ("attn1" or "attn2") projections by ``factors`` (q, k, v, out)."""
    patches: list[WeightPatch] = []
    for name, _ in unet.named_parameters():
        for projection, factor in factors.items():
            for suffix in _UNET_SUFFIX[projection]:
                if name.endswith((f"{which}.{suffix}.weight", f"{which}.{suffix}.bias")):
                    patches += _scaled("unet", name, factor)
    return patches


def text_attention_patches(models: dict[str, nn.Module], factors: dict[str, float]) -> list[WeightPatch]:
    """Weight patches scaling every text encoder's self-attention projections by ``factors``."""
    patches: list[WeightPatch] = []
    for slot, model in models.items():
        for name, param in model.named_parameters():
            if _OPEN_CLIP_QKV.fullmatch(name):
                third = param.shape[0] // 3
                for i, projection in enumerate(("q", "k", "v")):
                    patches += _scaled(slot, name, factors[projection], (i * third, (i + 1) * third))
            elif _OPEN_CLIP_OUT.fullmatch(name):
                patches += _scaled(slot, name, factors["out"])
            else:
                for projection, suffix in _CLIP_SUFFIX.items():
                    if name.endswith((f"{suffix}.weight", f"{suffix}.bias")):
                        patches += _scaled(slot, name, factors[projection])
    return patches
