"""Applying a LoRA file's layers to a model: copies that carry the new weights.

Patching never touches the loaded model: :func:`patched_module` returns a copy of the module tree
that shares every unchanged tensor with the original and owns new tensors only for the adapted
weights (and biases, for full-difference layers).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from .adapters import (LayerPatch, is_plain_lora, low_rank_update, parse_layers, patched_bias, patched_weight,
                       weight_delta)
from .files import LoraError
from .names import TEXT_PREFIXES, Target, text_targets, unet_targets


def layers_of(lora: dict[str, torch.Tensor] | dict[str, LayerPatch], path: object) -> dict[str, LayerPatch]:
    """The file's layers (a dict of LayerPatch passes through); LoraError naming the file if malformed."""
    if all(isinstance(v, LayerPatch) for v in lora.values()):
        return lora  # type: ignore[return-value]
    try:
        return parse_layers(lora)[0]  # type: ignore[arg-type]
    except ValueError as exc:
        raise LoraError(f"{path}: {exc}") from exc


def layer_names(lora: dict[str, torch.Tensor]) -> list[str]:
    """The adapted layers of a LoRA file (of every family NodeGraph applies), sorted."""
    return sorted(layers_of(lora, "LoRA"))


def other_families(lora: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Family → layers, for layers of families NodeGraph does not apply (OFT, BOFT, GLoRA, …)."""
    try:
        return parse_layers(lora)[1]
    except ValueError:
        return {}


def delta(lora: dict[str, torch.Tensor], layer: str, shape: torch.Size, path: Path) -> torch.Tensor:
    """scale·ΔW of one layer, float32, shaped ``shape`` (strength 1)."""
    return weight_delta(layers_of(lora, path)[layer], shape, path)


def patched_module(module: nn.Module, lora: dict, targets: dict[str, Target],
                   strength: float, path: Path) -> tuple[nn.Module, list[str]]:
    """A copy of ``module`` with the LoRA layers found in ``targets`` applied at ``strength``.

    Returns (the copy, the LoRA layers it applied). The copy shares the memory of every tensor it does
    not change with ``module`` but has Parameter objects of its own: moving one of the two to another
    device (``Module.to`` swaps each Parameter's data in place) never moves the other's weights.
    ``module`` itself is never modified. Layers landing on the same weight apply in name order.
    """
    memo: dict[int, object] = {id(b): b for b in module.buffers()}
    memo.update((id(p), nn.Parameter(p.detach(), requires_grad=False)) for p in module.parameters())
    clone = copy.deepcopy(module, memo=memo)
    params = dict(clone.named_parameters())
    new: dict[str, torch.Tensor] = {}
    layers = {name: layer for name, layer in sorted(layers_of(lora, path).items()) if name in targets}
    counts: dict[str, int] = {}
    for name in layers:
        counts[targets[name].param] = counts.get(targets[name].param, 0) + 1

    def current(name: str) -> torch.Tensor:
        if name not in new:
            new[name] = params[name].detach().to(torch.float32, copy=True)
        return new[name]

    for name, layer in layers.items():
        target = targets[name]
        if counts[target.param] == 1 and target.rows is None and is_plain_lora(layer):
            new[target.param] = low_rank_update(layer, params[target.param].detach(), strength, path)
            continue  # the common case: straight into the weight's dtype
        rows = slice(*target.rows) if target.rows else slice(None)
        weight = current(target.param)
        result = patched_weight(layer, weight[rows], strength, path, inplace=True)
        if result.data_ptr() != weight[rows].data_ptr():
            weight[rows] = result
        if "diff_b" in layer.tensors:
            bias = patched_bias(layer, current(target.bias)[rows] if target.bias else None, strength, path)
            new[target.bias][rows] = bias
    applied = list(layers)
    for name, value in new.items():
        owner_path, _, leaf = name.rpartition(".")
        owner = clone.get_submodule(owner_path) if owner_path else clone
        old = getattr(owner, leaf)
        setattr(owner, leaf, nn.Parameter(value.to(old.dtype), requires_grad=False))
    return clone, applied


def apply_to_model(model, lora: dict, strength: float, path: Path):
    """A copy of a ``DiffusionModel`` whose U-Net carries the LoRA; (copy, layers applied)."""
    unet, applied = patched_module(model.unet, lora, unet_targets(model.unet, model.unet.config), strength, path)
    clone = copy.copy(model)
    clone.unet = unet
    return clone, applied


def apply_to_text_encoder(encoder, lora: dict, strength: float, path: Path):
    """A copy of an ``SDTextEncoder`` whose encoders carry the LoRA; (copy, layers applied)."""
    layers = layers_of(lora, path)
    models, applied = dict(encoder.models), []
    for slot, prefixes in TEXT_PREFIXES.get(encoder.family, {}).items():
        if slot in models:
            targets = {k: v for prefix in prefixes for k, v in text_targets(models[slot], prefix).items()}
            models[slot], done = patched_module(models[slot], layers, targets, strength, path)
            applied += done
    clone = copy.copy(encoder)
    clone.models = models
    return clone, applied
