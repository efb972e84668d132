"""A LoRA extracted from a weight difference by truncated SVD (ComfyUI's "Extract and Save Lora").

For a difference ΔW ``[out, in(, k, k)]`` (a 1×1 conv taken as ``[out, in]``, a k×k conv flattened to
``[out, in·k·k]``), with SVD ΔW = U·diag(S)·Vᴴ and r = min(rank, out, in) (``in`` the input channels,
also for a conv, as ComfyUI):

    up = clamp(U[:, :r]·diag(S[:r])),  down = clamp(Vᴴ[:r])

where clamp limits both factors to ±q, q the 0.99 quantile of their entries taken together (ComfyUI's
outlier clamp); stored in float16, without ``alpha`` (scale 1). By Eckart–Young, up·down without the
clamp is the best rank-r approximation: ‖ΔW − up·down‖_F = √(Σ_{i>r} S_i²). ``full_diff`` stores ΔW
itself (``.diff``). 1-D weights (norms) are stored whole as ``.diff`` and biases as ``.diff_b`` when
``bias_diff`` is on (``standard``: 1-D weights only then; ``full_diff``: always).

Names: U-Net weights as ComfyUI writes them, ``diffusion_model.<LDM module path>.lora_up.weight``;
text-encoder layers under kohya names (``lora_te_``/``lora_te1_``/``lora_te2_`` + transformers' CLIP
path, the q/k/v thirds of an OpenCLIP ``in_proj`` apart), which every LoRA loader reads.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

CLAMP_QUANTILE = 0.99
LORA_TYPES = ("standard", "full_diff")


def low_rank_factors(diff: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(up, down) of one weight difference (see the module doc), float32, shaped for the layer."""
    out_dim, in_dim = diff.shape[:2]
    kernel = tuple(diff.shape[2:])
    rank = min(rank, out_dim, in_dim)
    flat = diff.float().reshape(out_dim, -1)
    u, s, vh = torch.linalg.svd(flat, full_matrices=False)
    up, down = u[:, :rank] * s[:rank], vh[:rank]
    hi = _quantile(torch.cat([up.flatten(), down.flatten()]), CLAMP_QUANTILE)
    up, down = up.clamp(-hi, hi), down.clamp(-hi, hi)
    if kernel:
        return up.reshape(out_dim, rank, *([1] * len(kernel))), down.reshape(rank, in_dim, *kernel)
    return up, down


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """torch.quantile's linear interpolation, without its input-size limit (sort and interpolate)."""
    ordered = values.sort().values
    position = q * (ordered.numel() - 1)
    low = int(position)
    high = min(low + 1, ordered.numel() - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def layer_tensors(name: str, weight_diff: torch.Tensor | None, bias_diff: torch.Tensor | None, rank: int,
                  lora_type: str, with_bias: bool) -> Iterator[tuple[str, torch.Tensor]]:
    """The file entries of one layer ``name`` from its weight (and bias) difference."""
    if weight_diff is not None:
        if lora_type == "full_diff":
            yield f"{name}.diff", weight_diff
        elif weight_diff.dim() < 2:
            if with_bias:
                yield f"{name}.diff", weight_diff
        elif bool(weight_diff.any()):
            up, down = low_rank_factors(weight_diff, rank)
            yield f"{name}.lora_up.weight", up
            yield f"{name}.lora_down.weight", down
    if with_bias and bias_diff is not None:
        yield f"{name}.diff_b", bias_diff


def extract_module(prefix: str, weights: dict[str, torch.Tensor], rank: int, lora_type: str,
                   with_bias: bool) -> dict[str, torch.Tensor]:
    """Entries for every ``<module>.weight`` / ``<module>.bias`` difference of one model part, named
    ``prefix + <module>`` (ComfyUI's layout: ``diffusion_model.`` for the U-Net)."""
    out: dict[str, torch.Tensor] = {}
    modules = sorted({k.rsplit(".", 1)[0] for k in weights if k.endswith((".weight", ".bias"))})
    for module in modules:
        for key, value in layer_tensors(prefix + module, weights.get(module + ".weight"),
                                        weights.get(module + ".bias"), rank, lora_type, with_bias):
            out[key] = value.contiguous().to(torch.float16)
    return out


def extract_text(targets: dict, weights: dict[str, torch.Tensor], rank: int, lora_type: str,
                 with_bias: bool) -> dict[str, torch.Tensor]:
    """Entries for the text-encoder layers ``targets`` (kohya name → Target) of one encoder's
    ``weights`` differences (rows of a fused q/k/v projection apart)."""
    out: dict[str, torch.Tensor] = {}
    for name, target in sorted(targets.items()):
        rows = slice(*target.rows) if target.rows else slice(None)
        weight = weights[target.param][rows]
        bias = weights[target.bias][rows] if target.bias else None
        for key, value in layer_tensors(name, weight, bias, rank, lora_type, with_bias):
            out[key] = value.contiguous().to(torch.float16)
    return out
