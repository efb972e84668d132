"""ControlNet / T2I-Adapter / Control-LoRA files: told apart by their keys, renamed to one layout.

Layouts (facts from ComfyUI's comfy/controlnet.py and diffusers):

- original ControlNet (lllyasviel): ``input_hint_block.*``, ``zero_convs.N.0.*``, ``middle_block_out.0.*``
  and the U-Net encoder's own names, with or without the ``control_model.`` prefix;
- difference ControlNet: that layout with a ``difference`` marker; its weights are differences to
  the base model's U-Net (DiffControlNetLoader adds the model's weights);
- diffusers ``ControlNetModel``: ``controlnet_cond_embedding.*``, ``controlnet_down_blocks.N``,
  ``controlnet_mid_block`` and diffusers' U-Net names;
- Control-LoRA (Stability): ``lora_controlnet`` marker; the U-Net encoder's weights as low-rank
  ``<weight>.up``/``.down`` pairs over the base model's weights, plus whole tensors for the rest;
- T2I-Adapter, original: ``conv_in`` + ``body.K.block1`` (full; XL when the unshuffled input has 256
  or 768 channels), ``body.L.in_conv`` + ``body.L.body.J`` (light); diffusers: ``adapter.body.L.resnets.J``;
- ControlNet-Union (xinsir's ControlNet-Union / ProMax): either ControlNet layout plus
  ``task_embedding``, ``control_add_embedding.*``, ``transformer_layes.*``, ``spatial_ch_projs.*``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nodegraph.errors import NodeError
from nodes.sd.lora.names import diffusers_unet_name
from nodes.sd.unet import UNetConfig

from .cldm import HINT_CONVS, ControlNetConfig
from .t2i import AdapterConfig


class ControlError(NodeError, ValueError):
    """A control file that cannot be used; the message names the file."""


@dataclass
class ControlFile:
    """A control file's tensors in the original layout and what kind of model they make."""

    path: Path
    kind: str  # "controlnet", "control_lora", "t2i"
    tensors: dict[str, torch.Tensor]
    config: ControlNetConfig | AdapterConfig | None = None
    difference: bool = False
    notes: list[str] = field(default_factory=list)


def read_control(path: str | Path) -> ControlFile:
    """Read and classify a control file (CheckpointError if unreadable, ControlError if not a control model)."""
    from nodes.sd.checkpoint import read_state_dict

    path = Path(path)
    sd = read_state_dict(path)[0]
    if isinstance(sd.get("adapter"), dict):
        sd = sd["adapter"]
    try:
        return classify(sd, path)
    except (KeyError, IndexError, ValueError) as exc:
        if isinstance(exc, ControlError):
            raise
        raise ControlError(f"{path}: not a ControlNet, T2I-Adapter or Control-LoRA that NodeGraph reads ({exc})") from exc


def classify(sd: dict[str, torch.Tensor], path: Path) -> ControlFile:
    if "lora_controlnet" in sd:
        tensors = {k: v for k, v in sd.items() if k != "lora_controlnet"}
        return ControlFile(path, "control_lora", tensors)
    if "controlnet_cond_embedding.conv_in.weight" in sd:
        union = {k: v for k, v in sd.items() if k.startswith(UNION_PREFIXES)}
        tensors = from_diffusers({k: v for k, v in sd.items() if k not in union}, path) | union
        return ControlFile(path, "controlnet", tensors, controlnet_config(tensors))
    for prefix in ("control_model.", ""):
        if prefix + "zero_convs.0.0.weight" in sd:
            tensors = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            return ControlFile(path, "controlnet", tensors, controlnet_config(tensors), difference="difference" in sd)
    adapter = t2i_original(sd)
    if adapter is not None:
        return ControlFile(path, "t2i", adapter, adapter_config(adapter))
    sample = ", ".join(sorted(sd)[:4])
    raise ControlError(f"{path}: not a ControlNet, T2I-Adapter or Control-LoRA (no known keys; first: {sample})")


# ------------------------------------------------------------------------------------ ControlNet
UNION_PREFIXES = ("task_embedding", "control_add_embedding.", "transformer_layes.", "spatial_ch_projs.")


def _count(keys: set[str], fmt: str) -> int:
    n = 0
    while any(k.startswith(fmt.format(n) + ".") for k in keys):
        n += 1
    return n


def controlnet_config(sd: dict[str, torch.Tensor]) -> ControlNetConfig:
    """The architecture of an original-layout ControlNet, from its key names and shapes (the U-Net
    encoder's rules, as nodes.sd.unet.config_from_state_dict reads a whole U-Net)."""
    keys = set(sd)
    mc, in_channels = sd["input_blocks.0.0.weight"].shape[:2]
    levels: list[list[tuple[int, int]]] = [[]]
    for i in range(1, _count(keys, "input_blocks.{}")):
        if f"input_blocks.{i}.0.op.weight" in keys:
            levels.append([])
        else:
            depth = _count(keys, f"input_blocks.{i}.1.transformer_blocks.{{}}")
            levels[-1].append((sd[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0], depth))
    nrb = len(levels[0])
    if any(len(level) != nrb or len(set(level)) != 1 for level in levels):
        raise ValueError(f"uneven encoder levels {levels}")
    to_k = sorted(k for k in keys if k.endswith(".attn2.to_k.weight"))
    proj_in = sorted(k for k in keys if k.endswith(".proj_in.weight"))
    linear = bool(proj_in) and sd[proj_in[0]].dim() == 2
    unet = UNetConfig(
        model_channels=mc, channel_mult=tuple(level[0][0] // mc for level in levels), num_res_blocks=nrb,
        transformer_depth=tuple(level[0][1] for level in levels),
        transformer_depth_middle=_count(keys, "middle_block.1.transformer_blocks.{}"),
        context_dim=sd[to_k[0]].shape[1] if to_k else None, use_linear_in_transformer=linear,
        num_heads=-1 if linear else 8, num_head_channels=64 if linear else -1,
        adm_in_channels=sd["label_emb.0.0.weight"].shape[1] if "label_emb.0.0.weight" in keys else None,
        in_channels=in_channels)
    hint = [sd[f"input_hint_block.{2 * i}.weight"].shape[0] for i in range(1, len(HINT_CONVS) + 1)]
    if tuple(hint) != tuple(c for c, _ in HINT_CONVS):
        raise ValueError(f"hint convs of widths {hint}, not the standard {[c for c, _ in HINT_CONVS]}")
    union = sd["task_embedding"].shape[0] if "task_embedding" in keys else 0
    return ControlNetConfig(unet, sd["input_hint_block.0.weight"].shape[1], union)


def _diffusers_config(sd: dict[str, torch.Tensor]) -> ControlNetConfig:
    keys = set(sd)
    mc, in_channels = sd["conv_in.weight"].shape[:2]
    n_levels = _count(keys, "down_blocks.{}")
    nrb = _count(keys, "down_blocks.0.resnets.{}")
    mult = tuple(sd[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0] // mc for i in range(n_levels))
    depth = tuple(_count(keys, f"down_blocks.{i}.attentions.0.transformer_blocks.{{}}") for i in range(n_levels))
    to_k = sorted(k for k in keys if k.endswith(".attn2.to_k.weight"))
    proj_in = sorted(k for k in keys if k.endswith(".proj_in.weight"))
    linear = bool(proj_in) and sd[proj_in[0]].dim() == 2
    unet = UNetConfig(
        mc, mult, nrb, depth, _count(keys, "mid_block.attentions.0.transformer_blocks.{}"),
        sd[to_k[0]].shape[1] if to_k else None, linear, num_heads=-1 if linear else 8,
        num_head_channels=64 if linear else -1,
        adm_in_channels=sd["add_embedding.linear_1.weight"].shape[1] if "add_embedding.linear_1.weight" in keys else None,
        in_channels=in_channels)
    return ControlNetConfig(unet, sd["controlnet_cond_embedding.conv_in.weight"].shape[1])


def diffusers_names(config: ControlNetConfig) -> dict[str, str]:
    """Original-layout parameter name → diffusers ``ControlNetModel`` name, for ``config``."""
    from nodes.sd.build import on_meta

    from .cldm import ControlNetModel

    model = on_meta(lambda: ControlNetModel(config))
    hint = {"0": "controlnet_cond_embedding.conv_in", str(2 * (len(HINT_CONVS) + 1)): "controlnet_cond_embedding.conv_out"}
    hint.update({str(2 * i): f"controlnet_cond_embedding.blocks.{i - 1}" for i in range(1, len(HINT_CONVS) + 1)})
    out = {}
    for name in model.state_dict():
        if name.startswith(UNION_PREFIXES):
            out[name] = name  # the union parts have one naming in both layouts
            continue
        module, leaf = name.rsplit(".", 1)
        parts = module.split(".")
        if parts[0] == "input_hint_block":
            target = hint[parts[1]]
        elif parts[0] == "zero_convs":
            target = f"controlnet_down_blocks.{parts[1]}"
        elif parts[0] == "middle_block_out":
            target = "controlnet_mid_block"
        else:
            target = diffusers_unet_name(module, config.unet)
        if target is None:
            raise ValueError(f"no diffusers name for {module}")
        out[name] = f"{target}.{leaf}"
    return out


def from_diffusers(sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """A diffusers-layout ControlNet's tensors under the original names."""
    names = diffusers_names(_diffusers_config(sd))
    missing = [d for d in names.values() if d not in sd]
    if missing:
        raise ControlError(f"{path}: a diffusers ControlNet without {', '.join(missing[:3])}"
                           + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    return {ours: sd[theirs] for ours, theirs in names.items()}


# ------------------------------------------------------------------------------------ T2I-Adapter
_DIFFUSERS_FULL = re.compile(r"adapter\.body\.(\d+)\.resnets\.(\d+)\.(.+)")


def t2i_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """An adapter's tensors in the original layout (diffusers' renamed), or None if not an adapter."""
    if "adapter.body.0.resnets.0.block1.weight" not in sd:
        return sd if ("conv_in.weight" in sd and "body.0.block1.weight" in sd) or "body.0.in_conv.weight" in sd else None
    light = "adapter.body.0.out_conv.weight" in sd
    nums_rb = _count(set(sd), "adapter.body.0.resnets.{}")
    out = {}
    for key, value in sd.items():
        match = _DIFFUSERS_FULL.fullmatch(key)
        if match:
            level, j, rest = int(match[1]), int(match[2]), match[3]
            out[f"body.{level}.body.{j}.{rest}" if light else f"body.{level * nums_rb + j}.{rest}"] = value
            continue
        level_key = re.fullmatch(r"adapter\.body\.(\d+)\.(in_conv|out_conv)\.(.+)", key)
        if level_key:
            level = int(level_key[1])
            out[f"body.{level if light else level * nums_rb}.{level_key[2]}.{level_key[3]}"] = value
        elif key.startswith("adapter."):
            out[key[len("adapter."):]] = value
        else:
            out[key] = value
    return out


def adapter_config(sd: dict[str, torch.Tensor]) -> AdapterConfig:
    keys = set(sd)
    if "body.0.in_conv.weight" in keys and "body.0.out_conv.weight" in keys:
        n = _count(keys, "body.{}")
        return AdapterConfig("light", tuple(sd[f"body.{i}.out_conv.weight"].shape[0] for i in range(n)),
                             _count(keys, "body.0.body.{}"), sd["body.0.in_conv.weight"].shape[1])
    cin = sd["conv_in.weight"].shape[1]
    nums_rb = 2  # every released full adapter (ComfyUI assumes it too)
    widths = [sd[f"body.{k}.block1.weight"].shape[0] for k in range(_count(keys, "body.{}"))]
    kind = "full_xl" if cin in (256, 768) else "full"  # 16×16 unshuffle of 1 or 3 channels
    return AdapterConfig(kind, tuple(widths[::nums_rb]), nums_rb, cin, sd["body.0.block2.weight"].shape[2])
