"""Where a LoRA layer lands: kohya layer names → the weights of our U-Net and text encoders.

Layers are named after the module path with ``_`` for ``.``, under ``lora_unet_`` and ``lora_te_``
(SDXL: ``lora_te1_`` for CLIP-L, ``lora_te2_`` for OpenCLIP-G):

- U-Net layers by their diffusers path (``lora_unet_down_blocks_1_attentions_0_proj_in``), which
  this module maps onto the LDM layout from the model's config, or by the LDM/SGM path itself
  (``lora_unet_input_blocks_4_1_proj_in``, as sd-scripts writes SDXL LoRAs);
- text-encoder layers by transformers' CLIP path (``lora_te_text_model_encoder_layers_0_self_attn_q_proj``);
  on an OpenCLIP encoder, ``q/k/v_proj`` are the thirds of ``attn.in_proj_weight``, ``out_proj`` is
  ``attn.out_proj``, ``mlp.fc1``/``fc2`` are ``mlp.c_fc``/``c_proj``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from nodes.sd.unet import UNetConfig


@dataclass(frozen=True)
class Target:
    """Where one LoRA layer lands: a weight parameter, or rows ``[start, stop)`` of it, and the
    matching bias (which full-difference layers, ``diff_b``, change), if the module has one."""

    param: str
    rows: tuple[int, int] | None = None
    bias: str | None = None


# ------------------------------------------------------------------------------------ U-Net names
_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_TOP = {"input_blocks.0.0": "conv_in", "time_embed.0": "time_embedding.linear_1",
        "time_embed.2": "time_embedding.linear_2", "label_emb.0.0": "add_embedding.linear_1",
        "label_emb.0.2": "add_embedding.linear_2", "out.0": "conv_norm_out", "out.2": "conv_out"}


def diffusers_unet_name(module: str, config: UNetConfig) -> str | None:
    """The diffusers ``UNet2DConditionModel`` path of one of our U-Net modules (None if it has none)."""
    if module in _TOP:
        return _TOP[module]
    per_level = config.num_res_blocks + 1
    parts = module.split(".")
    try:
        if parts[0] == "input_blocks":
            k, sub, rest = int(parts[1]), parts[2], parts[3:]
            level, j = divmod(k - 1, per_level)
            if j == config.num_res_blocks:  # the level's downsampler
                return f"down_blocks.{level}.downsamplers.0.conv" if rest == ["op"] else None
            head = f"down_blocks.{level}"
        elif parts[0] == "output_blocks":
            k, sub, rest = int(parts[1]), parts[2], parts[3:]
            level, j = divmod(k, per_level)
            if rest == ["conv"] and sub in ("1", "2"):
                return f"up_blocks.{level}.upsamplers.0.conv"
            head = f"up_blocks.{level}"
        elif parts[0] == "middle_block":
            sub, rest = parts[1], parts[2:]
            if sub == "1":
                return "mid_block.attentions.0." + ".".join(rest)
            return _resnet_name(f"mid_block.resnets.{int(sub) // 2}", rest)
        else:
            return None
    except (IndexError, ValueError):
        return None
    if sub == "0":
        return _resnet_name(f"{head}.resnets.{j}", rest)
    return f"{head}.attentions.{j}." + ".".join(rest)


def _resnet_name(head: str, rest: list[str]) -> str | None:
    inner = _RESNET.get(".".join(rest))
    return f"{head}.{inner}" if inner else None


def unet_targets(model: nn.Module, config: UNetConfig) -> dict[str, Target]:
    """LoRA layer name → weight, for every weight of the U-Net (both naming schemes)."""
    out: dict[str, Target] = {}
    params = dict(model.named_parameters())
    for name, param in params.items():
        if not name.endswith(".weight") or param.dim() < 2:
            continue
        module = name[: -len(".weight")]
        target = Target(name, bias=_bias(params, module))
        out["lora_unet_" + module.replace(".", "_")] = target
        diffusers = diffusers_unet_name(module, config)
        if diffusers is not None:
            out["lora_unet_" + diffusers.replace(".", "_")] = target
    return out


# ----------------------------------------------------------------------------- text-encoder names
_OPEN_CLIP = re.compile(r"transformer\.resblocks\.(\d+)\.(attn\.out_proj|mlp\.c_fc|mlp\.c_proj)\.weight")
_OPEN_CLIP_HF = {"attn.out_proj": "self_attn.out_proj", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def _bias(params: dict, module: str) -> str | None:
    return module + ".bias" if module + ".bias" in params else None


def text_targets(model: nn.Module, prefix: str) -> dict[str, Target]:
    """LoRA layer name → weight for one text encoder, named as transformers' CLIP under ``prefix``
    (``lora_te_``, ``lora_te1_``, ``lora_te2_``)."""
    out: dict[str, Target] = {}
    params = dict(model.named_parameters())
    for name, param in params.items():
        module = name[: -len(".weight")]
        if name.startswith("encoder.layers.") and name.endswith(".weight") and param.dim() == 2:
            out[prefix + "text_model_" + module.replace(".", "_")] = Target(name, bias=_bias(params, module))
            continue
        match = _OPEN_CLIP.fullmatch(name)
        if match:
            hf = f"encoder.layers.{match[1]}.{_OPEN_CLIP_HF[match[2]]}"
            out[prefix + "text_model_" + hf.replace(".", "_")] = Target(name, bias=_bias(params, module))
        elif name.startswith("transformer.resblocks.") and name.endswith(".attn.in_proj_weight"):
            layer = name.split(".")[2]
            width = param.shape[1]
            bias = name[: -len("weight")] + "bias"
            for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                out[f"{prefix}text_model_encoder_layers_{layer}_self_attn_{proj}"] = Target(
                    name, (i * width, (i + 1) * width), bias if bias in params else None)
    return out


# Per family: encoder slot → the kohya prefixes of its layers (diffusers' "text_encoder" reads as lora_te1_).
TEXT_PREFIXES = {"sd1": {"l": ("lora_te_", "lora_te1_")}, "sd2": {"h": ("lora_te_", "lora_te1_")},
                 "sdxl": {"l": ("lora_te1_",), "g": ("lora_te2_",)}, "sdxl_refiner": {"g": ("lora_te_", "lora_te1_")}}


