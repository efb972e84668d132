"""A LoRA file's layers as weight patches (nodes/sd/patches.py's `WeightPatch`) on a shared model.

Load LoRA does not copy or change the loaded model: it returns a value sharing the U-Net (or the text
encoders) that carries one patch per adapted weight. The new weights are computed from the layer's
tensors when the model runs (`DiffusionModel.in_use`, `SDTextEncoder.encode_tokens`) and restored
after, so loading a LoRA costs reading the file, and LoRAs stack by adding patches.

Per layer (``s`` the node's strength): LoRA/LoCon, LoHa, LoKr and full-difference layers add
``s·scale·ΔW`` (:func:`weight_delta`); (IA)³ and DoRA layers, whose new weight is not the old plus a
fixed term, patch with ``patched_weight(W) − W`` at strength 1; ``diff_b`` adds ``s·diff_b`` to the bias.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from nodes.sd.patches import WeightPatch

from .adapters import LayerPatch, is_plain_lora, low_rank_update, patched_weight, weight_delta
from .apply import layers_of
from .files import LoraError
from .names import TEXT_PREFIXES, Target, text_targets, unet_targets


def _rows_shape(module: nn.Module, target: Target) -> torch.Size:
    shape = module.get_parameter(target.param).shape
    if target.rows is None:
        return shape
    return torch.Size((target.rows[1] - target.rows[0], *shape[1:]))


def _check_low_rank(layer: LayerPatch, shape: torch.Size, path: object) -> None:
    """A plain LoRA layer whose product cannot fit the weight fails now (at load), not when sampling."""
    up, down = layer.tensors.get("lora_up.weight"), layer.tensors.get("lora_down.weight")
    if layer.family != "lora" or up is None or down is None or "lora_mid.weight" in layer.tensors:
        return
    if up.shape[0] * down[0].numel() != shape.numel() or up.shape[1] != down.shape[0]:
        raise LoraError(f"{path}: layer {layer.name} (lora) makes a {(up.shape[0], down[0].numel())} change, but "
                        f"the model's weight is {tuple(shape)}: the LoRA was made for another model family")


def _layer_patches(slot: str, layer: LayerPatch, target: Target, shape: torch.Size, strength: float,
                   path: object) -> list[WeightPatch]:
    additive = layer.family in ("lora", "loha", "lokr", "diff") and (
        layer.family == "diff" or "dora_scale" not in layer.tensors)
    if additive:
        if layer.family == "diff" and "diff" not in layer.tensors:
            patches = []
        else:
            direct = (lambda w, p=layer: low_rank_update(p, w, strength, path)) if is_plain_lora(layer) else None
            patches = [WeightPatch(slot, target.param, lambda w, p=layer: weight_delta(p, w.shape, path),
                                   strength, 1.0, target.rows, direct)]
    else:  # (IA)³, DoRA: the new weight is a function of the whole current weight
        patches = [WeightPatch(slot, target.param, lambda w, p=layer: patched_weight(p, w, strength, path) - w,
                               1.0, 1.0, target.rows)]
    diff_b = layer.tensors.get("diff_b")
    if diff_b is not None:
        if target.bias is None:
            raise LoraError(f"{path}: layer {layer.name} has a diff_b, but the model's layer has no bias")
        patches.append(WeightPatch(slot, target.bias, diff_b.float().flatten(), strength, 1.0, target.rows))
    return patches


def weight_patches(slot: str, module: nn.Module, lora: dict, targets: dict[str, Target], strength: float,
                   path: Path) -> tuple[list[WeightPatch], list[str]]:
    """The patches of ``module`` (the model value's slot ``slot``) for the LoRA layers found in
    ``targets``, in layer-name order (the order layers landing on one weight apply); and the layers."""
    patches: list[WeightPatch] = []
    applied: list[str] = []
    for name, layer in sorted(layers_of(lora, path).items()):
        target = targets.get(name)
        if target is None:
            continue
        shape = _rows_shape(module, target)
        _check_low_rank(layer, shape, path)
        patches += _layer_patches(slot, layer, target, shape, strength, path)
        applied.append(name)
    return patches, applied


def vector_targets(module: nn.Module, prefix: str) -> dict[str, Target]:
    """Layer name → weight for the 1-D weights (norms) of ``module``, under their LDM path: the
    full-difference layers (``.diff``) ComfyUI's LoRA extractor writes for them."""
    params = dict(module.named_parameters())
    out: dict[str, Target] = {}
    for name, param in params.items():
        if name.endswith(".weight") and param.dim() == 1:
            owner = name[: -len(".weight")]
            out[prefix + owner.replace(".", "_")] = Target(name, bias=owner + ".bias" if owner + ".bias" in params
                                                           else None)
    return out


def model_with_lora(model, lora: dict, strength: float, path: Path):
    """A ``DiffusionModel`` value sharing ``model``'s U-Net that carries the LoRA as weight patches
    after its own; (the value, the layers applied)."""
    targets = {**vector_targets(model.unet, "lora_unet_"), **unet_targets(model.unet, model.unet.config)}
    patches, applied = weight_patches("unet", model.unet, lora, targets, strength, path)
    return model.patched(weights=patches), applied


def text_encoder_with_lora(encoder, lora: dict, strength: float, path: Path):
    """An ``SDTextEncoder`` value sharing ``encoder``'s weights that carries the LoRA as weight
    patches after its own; (the value, the layers applied)."""
    layers = layers_of(lora, path)
    patches: list[WeightPatch] = []
    applied: list[str] = []
    for slot, prefixes in TEXT_PREFIXES.get(encoder.family, {}).items():
        module = encoder.models.get(slot)
        if module is None:
            continue
        targets = {k: v for prefix in prefixes for k, v in text_targets(module, prefix).items()}
        found, done = weight_patches(slot, module, layers, targets, strength, path)
        patches += found
        applied += done
    return (encoder.with_weight_patches(patches) if patches else copy.copy(encoder)), applied
