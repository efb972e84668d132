"""The LoRA families, one layer at a time: what a layer's tensors do to the weight they land on.

A file's tensors are grouped by layer name (the part before the first ``.``); the suffixes after it
say the family (facts from ComfyUI's comfy/weight_adapter/ and LyCORIS; ``s`` is the node's strength,
``a`` the layer's ``alpha`` or None):

- LoRA / LoCon: ``lora_up.weight`` U ``[out, r(,1,1)]``, ``lora_down.weight`` D ``[r, in(,k,k)]``,
  ΔW = U·D; with a Tucker core ``lora_mid.weight`` M ``[r, r, k, k]`` (LoCon's "CP" conv mode),
  ΔW[i, j] = Σ_mn M[m, n]·U[i, m]·D[n, j]. Scale a/r (r = D's rows), 1 without alpha.
- LoHa: ΔW = (W1a·W1b) ⊙ (W2a·W2b) from ``hada_w1_a/b``, ``hada_w2_a/b``; with ``hada_t1/t2`` each
  factor is a Tucker rebuild, t ×₀ Wa ×₁ Wbᵀ. Scale a/r (r = W1b's rows).
- LoKr: ΔW = W1 ⊗ W2 (Kronecker), each factor either whole (``lokr_w1``) or a product
  (``lokr_w1_a``·``lokr_w1_b``; W2 optionally Tucker with ``lokr_t2``). Scale a/r where r is the
  rank of the (last) factored side; 1 when both sides are whole.
- full difference: ΔW = ``diff``, Δbias = ``diff_b`` (scale 1).
- (IA)³: ``weight`` w rescales the output channels, W' = W·(1 + s·w) (the input channels when
  ``on_input`` is 1).

Then W' = W + s·scale·ΔW, except with DoRA (``dora_scale`` m beside LoRA/LoHa/LoKr): with
W_c = W + scale·ΔW, W' = W + s·(m·W_c/‖W_c‖ − W), the norm taken per input channel when m is
``[1, in, …]`` (ComfyUI's convention) or per output channel when m is ``[out, 1, …]`` (LyCORIS's
``wd_on_out``). Everything is computed in float32.

:func:`patched_weight` and :func:`patched_bias` are "the new weight of one layer" functions a model
patch mechanism can call; :func:`weight_delta` is the additive part alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .files import LoraError

# suffix after the layer name → family (None: modifiers shared by several families)
SUFFIXES: dict[str, str | None] = {
    "lora_up.weight": "lora", "lora_down.weight": "lora", "lora_mid.weight": "lora",
    "hada_w1_a": "loha", "hada_w1_b": "loha", "hada_w2_a": "loha", "hada_w2_b": "loha",
    "hada_t1": "loha", "hada_t2": "loha",
    "lokr_w1": "lokr", "lokr_w1_a": "lokr", "lokr_w1_b": "lokr", "lokr_w2": "lokr", "lokr_w2_a": "lokr",
    "lokr_w2_b": "lokr", "lokr_t2": "lokr",
    "diff": "diff", "diff_b": "diff",
    "weight": "ia3", "on_input": "ia3",
    "alpha": None, "dora_scale": None,
}
# suffixes of families NodeGraph does not apply → their name in the message
OTHER_FAMILIES = {"oft_blocks": "OFT", "oft_diag": "BOFT/OFT", "a1.weight": "GLoRA", "a2.weight": "GLoRA",
                  "b1.weight": "GLoRA", "b2.weight": "GLoRA", "w_norm": "norm", "b_norm": "norm",
                  "oft_R": "OFT", "rescale": "OFT"}
REQUIRED = {"lora": ("lora_up.weight", "lora_down.weight"),
            "loha": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"),
            "lokr": (), "diff": (), "ia3": ("weight",)}


@dataclass
class LayerPatch:
    """One layer of a LoRA file: its family and its tensors by suffix."""

    name: str
    family: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def get(self, suffix: str) -> torch.Tensor | None:
        t = self.tensors.get(suffix)
        return None if t is None else t.float()

    @property
    def alpha(self) -> float | None:
        a = self.tensors.get("alpha")
        return None if a is None else float(a)


def parse_layers(lora: dict[str, torch.Tensor]) -> tuple[dict[str, LayerPatch], dict[str, list[str]]]:
    """The file's layers by name, and the layers of families NodeGraph does not apply (family → layers).

    Keys without a layer/suffix split, or with suffixes nobody knows, are left out (the caller
    reports layers that fit nothing). A layer mixing two families, or missing a tensor its family
    needs, is a ValueError naming the layer.
    """
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in lora.items():
        layer, dot, suffix = key.partition(".")
        if dot:
            grouped.setdefault(layer, {})[suffix] = value
    layers: dict[str, LayerPatch] = {}
    other: dict[str, list[str]] = {}
    for layer, tensors in sorted(grouped.items()):
        unknown = sorted({OTHER_FAMILIES[s] for s in tensors if s in OTHER_FAMILIES})
        if unknown:
            other.setdefault("/".join(unknown), []).append(layer)
            continue
        # a diff_b beside another family's weights changes the bias alone (as ComfyUI's extractor writes it)
        families = {SUFFIXES[s] for s in tensors if SUFFIXES.get(s) and s != "diff_b"} or (
            {"diff"} if "diff_b" in tensors else set())
        if not families:
            continue
        if len(families) > 1:
            raise ValueError(f"layer {layer} mixes {' and '.join(sorted(families))} weights")
        family = families.pop()
        missing = [s for s in REQUIRED[family] if s not in tensors]
        if missing:
            raise ValueError(f"layer {layer} has {family} weights but no {', '.join(missing)}")
        layers[layer] = LayerPatch(layer, family, {s: t for s, t in tensors.items() if s in SUFFIXES})
    return layers, other


# ----------------------------------------------------------------------------------- ΔW per family
def _tucker(core: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rebuild ``[out, in, k…]`` from a core ``[r1, r2, k…]``, ``a`` ``[out, r1]`` and ``b`` ``[r2, in]``."""
    return torch.einsum("mn...,im,nj->ij...", core, a, b)


def _lora(p: LayerPatch) -> tuple[torch.Tensor, int]:
    up, down, mid = p.get("lora_up.weight"), p.get("lora_down.weight"), p.get("lora_mid.weight")
    rank = down.shape[0]
    if mid is not None:
        return _tucker(mid, up.flatten(1), down.flatten(1)), rank
    return up.flatten(1) @ down.flatten(1), rank


def _loha(p: LayerPatch) -> tuple[torch.Tensor, int]:
    factors = []
    for i in (1, 2):
        a, b, t = p.get(f"hada_w{i}_a"), p.get(f"hada_w{i}_b"), p.get(f"hada_t{i}")
        factors.append(a @ b if t is None else _loha_tucker(t, a, b))
    return factors[0] * factors[1], p.tensors["hada_w1_b"].shape[0]


def _loha_tucker(t: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LoHa/LoKr's CP rebuild: out[p, r, …] = Σ_ij t[i, j, …]·b[j, r]·a[i, p]."""
    return torch.einsum("ij...,jr,ip->pr...", t, b, a)


def _lokr(p: LayerPatch) -> tuple[torch.Tensor, int | None]:
    rank = None
    w1 = p.get("lokr_w1")
    if w1 is None:
        w1, rank = p.get("lokr_w1_a") @ p.get("lokr_w1_b"), p.tensors["lokr_w1_b"].shape[0]
    w2 = p.get("lokr_w2")
    if w2 is None:
        a, b, t = p.get("lokr_w2_a"), p.get("lokr_w2_b"), p.get("lokr_t2")
        w2, rank = (a @ b if t is None else _loha_tucker(t, a, b)), p.tensors["lokr_w2_b"].shape[0]
    if w1 is None or w2 is None:
        raise ValueError(f"layer {p.name} has only one LoKr factor")
    if w2.dim() == 4:
        w1 = w1[:, :, None, None]
    return torch.kron(w1.contiguous(), w2.contiguous()), rank


def weight_delta(p: LayerPatch, shape: torch.Size, path: object) -> torch.Tensor:
    """scale·ΔW of a LoRA/LoHa/LoKr/diff layer, float32, shaped ``shape`` (strength not applied)."""
    if p.family == "diff":
        product, scale = p.get("diff"), 1.0
        if product is None:
            return torch.zeros(shape)
    else:
        product, rank = {"lora": _lora, "loha": _loha, "lokr": _lokr}[p.family](p)
        scale = p.alpha / rank if p.alpha is not None and rank else 1.0
    if product.numel() != shape.numel():
        raise LoraError(f"{path}: layer {p.name} ({p.family}) makes a {tuple(product.shape)} change, but the "
                        f"model's weight is {tuple(shape)}: the LoRA was made for another model family")
    return product.reshape(shape) * scale


# ----------------------------------------------------------------------------------- new weights
def patched_weight(p: LayerPatch, weight: torch.Tensor, strength: float, path: object,
                   inplace: bool = False) -> torch.Tensor:
    """The layer's new weight (float32) from the current ``weight`` at ``strength``.

    ``inplace``: ``weight`` is a float32 tensor the caller owns, updated in place where the family
    allows it (plain LoRA, LoHa, LoKr, diff: one fused update, no full-size temporaries).
    """
    if not (inplace and weight.dtype == torch.float32):
        weight = weight.float().clone()
    if p.family == "ia3":
        return _ia3(p, weight, strength, path)
    if is_plain_lora(p):
        return _add_low_rank(p, weight, strength, path)
    delta = weight_delta(p, weight.shape, path)
    dora = p.get("dora_scale")
    if dora is None or p.family == "diff":
        return weight.add_(delta, alpha=strength)
    combined = weight + delta
    return weight.add_(combined * (dora / _dora_norm(combined, dora, p, path)) - weight, alpha=strength)


def is_plain_lora(p: LayerPatch) -> bool:
    """A layer that is up @ down alone (no Tucker core, no DoRA): :func:`low_rank_update` applies it."""
    return (p.family == "lora" and "lora_mid.weight" not in p.tensors and "dora_scale" not in p.tensors
            and "diff_b" not in p.tensors)


def _low_rank_factors(p: LayerPatch, weight: torch.Tensor, strength: float, path: object):
    up, down = p.get("lora_up.weight").flatten(1), p.get("lora_down.weight").flatten(1)
    if up.shape[0] * down.shape[1] != weight.numel() or up.shape[1] != down.shape[0]:
        raise LoraError(f"{path}: layer {p.name} (lora) makes a {(up.shape[0], down.shape[1])} change, but the "
                        f"model's weight is {tuple(weight.shape)}: the LoRA was made for another model family")
    scale = p.alpha / down.shape[0] if p.alpha is not None else 1.0
    return up, down, strength * scale


def _add_low_rank(p: LayerPatch, weight: torch.Tensor, strength: float, path: object) -> torch.Tensor:
    """weight += strength·(a/r)·up @ down, as one matmul-accumulate into ``weight`` (float32)."""
    up, down, alpha = _low_rank_factors(p, weight, strength, path)
    weight.view(up.shape[0], -1).addmm_(up, down, alpha=alpha)
    return weight


# Rows of a low-precision weight updated per step: the float32 product of that many rows stays in the
# CPU's last-level cache between the matmul that makes it, the add and the rounding copy (8 MB), and
# there are few enough steps that a busy CPU's thread hand-offs per operation do not dominate.
LOW_RANK_CHUNK_ELEMENTS = 1 << 21


def low_rank_update(p: LayerPatch, weight: torch.Tensor, strength: float, path: object) -> torch.Tensor:
    """A plain LoRA layer's new weight in ``weight``'s own dtype, out of place: float32 products added in
    float32 and rounded once (as ComfyUI), without a full-size float32 copy of the weight."""
    up, down, alpha = _low_rank_factors(p, weight, strength, path)
    flat = weight.reshape(up.shape[0], -1)
    up, down = up.to(weight.device), down.to(weight.device)
    if weight.dtype == torch.float32:
        return torch.addmm(flat, up, down, alpha=alpha).view(weight.shape)
    out = torch.empty_like(flat)
    up = up * alpha
    rows = max(1, LOW_RANK_CHUNK_ELEMENTS // flat.shape[1])
    for start in range(0, flat.shape[0], rows):
        part = slice(start, start + rows)
        # (torch.add(..., out=<half>) takes a slow mixed-dtype path; add_ into float32 and one copy do not)
        out[part].copy_(torch.mm(up[part], down).add_(flat[part]))
    return out.view(weight.shape)


def _dora_norm(w: torch.Tensor, dora: torch.Tensor, p: LayerPatch, path: object) -> torch.Tensor:
    ones = [1] * (w.dim() - 1)
    if dora.numel() == w.shape[0] and dora.shape[0] == w.shape[0] and w.shape[0] != 1:  # per output channel
        return w.reshape(w.shape[0], -1).norm(dim=1).reshape(w.shape[0], *ones)
    if dora.numel() != w.shape[1]:
        raise LoraError(f"{path}: layer {p.name} has a dora_scale of shape {tuple(dora.shape)}, which fits "
                        f"neither side of the model's {tuple(w.shape)} weight: made for another model family")
    norm = w.transpose(0, 1).reshape(w.shape[1], -1).norm(dim=1)
    return norm.reshape(1, w.shape[1], *ones[1:])


def _ia3(p: LayerPatch, weight: torch.Tensor, strength: float, path: object) -> torch.Tensor:
    w = p.get("weight").flatten()
    on_input = p.tensors.get("on_input") is not None and bool(p.tensors["on_input"].flatten()[0])
    axis = 1 if on_input else 0
    if w.numel() != weight.shape[axis]:
        raise LoraError(f"{path}: layer {p.name} (IA)³ scales {w.numel()} channels, but the model's weight is "
                        f"{tuple(weight.shape)}: the LoRA was made for another model family")
    shape = [1] * weight.dim()
    shape[axis] = -1
    return weight * (1 + strength * w.reshape(shape))


def patched_bias(p: LayerPatch, bias: torch.Tensor | None, strength: float, path: object) -> torch.Tensor | None:
    """The layer's new bias (float32), or None if the layer leaves the bias alone."""
    diff_b = p.get("diff_b")
    if diff_b is None:
        return None
    if bias is None or diff_b.numel() != bias.numel():
        raise LoraError(f"{path}: layer {p.name} has a diff_b of {diff_b.numel()} values, but the model's "
                        f"layer has {'no bias' if bias is None else f'{bias.numel()} bias values'}")
    return bias.float() + strength * diff_b.reshape(bias.shape)
