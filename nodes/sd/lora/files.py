"""Reading LoRA files: their tensors under kohya names, with PEFT's alpha taken from the metadata.

Files trained with diffusers or PEFT (``unet.<path>.lora.down.weight``, ``lora_A``/``lora_B``,
``text_encoder``/``text_encoder_2``) and ComfyUI's own (``diffusion_model.<path>.lora_up.weight``, as
its LoRA extractor writes them) are renamed to kohya names on reading (:func:`kohya_names`).
PEFT stores no ``alpha`` tensors: diffusers writes the adapter's ``LoraConfig`` as JSON under the
safetensors metadata key ``lora_adapter_metadata`` (``lora_alpha``, ``alpha_pattern``,
``use_rslora``; per component as ``unet.lora_alpha``, … when a pipeline saved it), and PEFT scales
each layer by ``lora_alpha / r`` (``lora_alpha / √r`` with rsLoRA). :func:`kohya_names` writes that
as the layer's kohya ``alpha`` (``alpha / r`` is the kohya scale), so every family reads one way.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from nodegraph.errors import NodeError


class LoraError(NodeError, ValueError):
    """A LoRA file that cannot be applied; the message names the file."""


def read_lora(path: str | Path) -> dict[str, torch.Tensor]:
    """A LoRA file's tensors (safetensors, or a weights-only pickle) under kohya names
    (:func:`kohya_names`); CheckpointError if unreadable."""
    from nodes.sd.checkpoint import read_state_dict

    tensors, metadata = read_state_dict(path)
    try:
        return kohya_names(tensors, metadata)
    except ValueError as exc:
        raise LoraError(f"{path}: {exc}") from exc


_DIFFUSERS_KEY = re.compile(r"(unet|text_encoder|text_encoder_2)\.(.+?)(?:\.processor\.(to_q|to_k|to_v|to_out)_|\.)"
                            r"(lora\.down|lora\.up|lora_A|lora_B)\.weight")
_DIFFUSERS_ALPHA = re.compile(r"(unet|text_encoder|text_encoder_2)\.(.+)\.alpha")
_KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
_KOHYA_PART = {"lora.down": "lora_down", "lora_A": "lora_down", "lora.up": "lora_up", "lora_B": "lora_up"}


def kohya_names(lora: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """``lora`` with diffusers-trained names rewritten the kohya way; kohya names pass unchanged.

    diffusers writes ``unet.<module path>.lora.down.weight`` (or PEFT's ``lora_A``/``lora_B``), older
    versions ``<attention>.processor.to_q_lora.down.weight``, and ``text_encoder``/``text_encoder_2``
    for the text encoders (read as ``lora_te1_``/``lora_te2_``: the first is SD1/SD2's only encoder).
    A PEFT layer without an ``alpha`` tensor gets the one its ``metadata`` gives (see the module doc).
    """
    peft = _peft_configs(metadata or {})
    out: dict[str, torch.Tensor] = {}
    peft_layers: dict[str, tuple[str, str, int]] = {}
    for key, value in lora.items():
        if key.startswith(_COMFY_UNET):
            key = _comfy_unet_name(key)
        match = _DIFFUSERS_KEY.fullmatch(key)
        alpha = None if match else _DIFFUSERS_ALPHA.fullmatch(key)
        found = match or alpha
        if not found:
            out[key] = value
            continue
        component, module = found[1], found[2]
        if match and match[3]:  # <attention>.processor.to_q_lora.down.weight
            module += f".{match[3]}" + (".0" if match[3] == "to_out" else "")
        path = module
        if component != "unet" and not module.startswith("text_model."):
            module = "text_model." + module  # transformers >= 5.6 dropped this level; kohya names keep it
        name = _KOHYA_PREFIX[component] + module.replace(".", "_")
        out[f"{name}.{_KOHYA_PART[match[4]]}.weight" if match else f"{name}.alpha"] = value
        if match and match[4] == "lora_A":
            peft_layers[name] = (component, path, int(value.shape[0]))
    for name, (component, path, rank) in peft_layers.items():
        config = peft.get(component)
        if config is not None and f"{name}.alpha" not in out:
            out[f"{name}.alpha"] = torch.tensor(_peft_alpha(config, path, rank))
    return out


_COMFY_UNET = "diffusion_model."


def _comfy_unet_name(key: str) -> str:
    """ComfyUI's own LoRA names (``diffusion_model.<LDM module path>.<suffix>``, as its LoRA extractor
    writes them) → the kohya name of the same LDM path (``lora_unet_<path with _>.<suffix>``)."""
    from .adapters import SUFFIXES

    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if key.endswith("." + suffix):
            module = key[len(_COMFY_UNET): -len(suffix) - 1]
            return f"lora_unet_{module.replace('.', '_')}.{suffix}"
    return key


def _peft_configs(metadata: dict[str, str]) -> dict[str, dict]:
    """Component → PEFT LoraConfig dict, from diffusers' ``lora_adapter_metadata`` (absent: {})."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"its lora_adapter_metadata is not JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ValueError("its lora_adapter_metadata is not a JSON object")
    per_component: dict[str, dict] = {}
    for key, value in config.items():
        component, dot, field = key.partition(".")
        if dot and component in _KOHYA_PREFIX:
            per_component.setdefault(component, {})[field] = value
    if per_component:
        return per_component
    return {component: config for component in _KOHYA_PREFIX}  # one model's own adapter config


def _peft_alpha(config: dict, path: str, rank: int) -> float:
    """The kohya alpha that gives PEFT's scale for the module at ``path``: alpha/r = lora_alpha/r,
    or lora_alpha/√r with rsLoRA. ``alpha_pattern`` keys match a module path's tail, as in PEFT."""
    alpha = config.get("lora_alpha", rank)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if path == pattern or path.endswith("." + pattern) or _pattern_match(pattern, path):
            alpha = value
            break
    alpha = float(alpha)
    return alpha * math.sqrt(rank) if config.get("use_rslora") else alpha


def _pattern_match(pattern: str, path: str) -> bool:
    try:
        return re.fullmatch(rf"(.*\.)?(?:{pattern})", path) is not None
    except re.error:
        return False
