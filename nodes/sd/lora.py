"""LoRA files (kohya-ss / A1111 format) applied to a checkpoint's U-Net and text encoders.

A LoRA stores, per adapted layer, a low-rank pair ``lora_down`` ``[r, in(, k, k)]`` and ``lora_up``
``[out, r(, 1, 1)]`` and optionally ``alpha``; the layer's weight becomes
``W + strength · (alpha / r) · up @ down`` (reshaped to W's shape). Layers are named after the
module path with ``_`` for ``.``, under ``lora_unet_`` and ``lora_te_`` (SDXL: ``lora_te1_`` for
CLIP-L, ``lora_te2_`` for OpenCLIP-G):

- U-Net layers by their diffusers path (``lora_unet_down_blocks_1_attentions_0_proj_in``), which
  this module maps onto the LDM layout from the model's config, or by the LDM/SGM path itself
  (``lora_unet_input_blocks_4_1_proj_in``, as sd-scripts writes SDXL LoRAs);
- text-encoder layers by transformers' CLIP path (``lora_te_text_model_encoder_layers_0_self_attn_q_proj``);
  on an OpenCLIP encoder, ``q/k/v_proj`` are the thirds of ``attn.in_proj_weight``, ``out_proj`` is
  ``attn.out_proj``, ``mlp.fc1``/``fc2`` are ``mlp.c_fc``/``c_proj``.

Files trained with diffusers or PEFT (``unet.<path>.lora.down.weight``, ``lora_A``/``lora_B``,
``text_encoder``/``text_encoder_2``) are renamed to kohya names on reading (:func:`kohya_names`).

Patching never touches the loaded model: :func:`patched_module` returns a copy of the module tree
that shares every unchanged tensor with the original and owns new tensors only for the adapted
weights.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

from nodegraph.errors import NodeError

import torch
from torch import nn

from nodes.sd.unet import UNetConfig


class LoraError(NodeError, ValueError):
    """A LoRA file that cannot be applied; the message names the file."""


@dataclass(frozen=True)
class Target:
    """Where one LoRA layer lands: a weight parameter, or rows ``[start, stop)`` of it."""

    param: str
    rows: tuple[int, int] | None = None


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
    for name, param in model.named_parameters():
        if not name.endswith(".weight") or param.dim() < 2:
            continue
        module = name[: -len(".weight")]
        target = Target(name)
        out["lora_unet_" + module.replace(".", "_")] = target
        diffusers = diffusers_unet_name(module, config)
        if diffusers is not None:
            out["lora_unet_" + diffusers.replace(".", "_")] = target
    return out


# ----------------------------------------------------------------------------- text-encoder names
_OPEN_CLIP = re.compile(r"transformer\.resblocks\.(\d+)\.(attn\.out_proj|mlp\.c_fc|mlp\.c_proj)\.weight")
_OPEN_CLIP_HF = {"attn.out_proj": "self_attn.out_proj", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def text_targets(model: nn.Module, prefix: str) -> dict[str, Target]:
    """LoRA layer name → weight for one text encoder, named as transformers' CLIP under ``prefix``
    (``lora_te_``, ``lora_te1_``, ``lora_te2_``)."""
    out: dict[str, Target] = {}
    for name, param in model.named_parameters():
        if name.startswith("encoder.layers.") and name.endswith(".weight") and param.dim() == 2:
            out[prefix + "text_model_" + name[: -len(".weight")].replace(".", "_")] = Target(name)
            continue
        match = _OPEN_CLIP.fullmatch(name)
        if match:
            hf = f"encoder.layers.{match[1]}.{_OPEN_CLIP_HF[match[2]]}"
            out[prefix + "text_model_" + hf.replace(".", "_")] = Target(name)
        elif name.startswith("transformer.resblocks.") and name.endswith(".attn.in_proj_weight"):
            layer = name.split(".")[2]
            width = param.shape[1]
            for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                out[f"{prefix}text_model_encoder_layers_{layer}_self_attn_{proj}"] = Target(
                    name, (i * width, (i + 1) * width))
    return out


# --------------------------------------------------------------------------------------- reading
def read_lora(path: str | Path) -> dict[str, torch.Tensor]:
    """A LoRA file's tensors (safetensors, or a weights-only pickle) under kohya names
    (:func:`kohya_names`); CheckpointError if unreadable."""
    from nodes.sd.checkpoint import read_state_dict

    return kohya_names(read_state_dict(path)[0])


_DIFFUSERS_KEY = re.compile(r"(unet|text_encoder|text_encoder_2)\.(.+?)(?:\.processor\.(to_q|to_k|to_v|to_out)_|\.)"
                            r"(lora\.down|lora\.up|lora_A|lora_B)\.weight")
_DIFFUSERS_ALPHA = re.compile(r"(unet|text_encoder|text_encoder_2)\.(.+)\.alpha")
_KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
_KOHYA_PART = {"lora.down": "lora_down", "lora_A": "lora_down", "lora.up": "lora_up", "lora_B": "lora_up"}


def kohya_names(lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``lora`` with diffusers-trained names rewritten the kohya way; kohya names pass unchanged.

    diffusers writes ``unet.<module path>.lora.down.weight`` (or PEFT's ``lora_A``/``lora_B``), older
    versions ``<attention>.processor.to_q_lora.down.weight``, and ``text_encoder``/``text_encoder_2``
    for the text encoders (read as ``lora_te1_``/``lora_te2_``: the first is SD1/SD2's only encoder).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in lora.items():
        match = _DIFFUSERS_KEY.fullmatch(key)
        alpha = None if match else _DIFFUSERS_ALPHA.fullmatch(key)
        found = match or alpha
        if not found:
            out[key] = value
            continue
        component, module = found[1], found[2]
        if match and match[3]:  # <attention>.processor.to_q_lora.down.weight
            module += f".{match[3]}" + (".0" if match[3] == "to_out" else "")
        if component != "unet" and not module.startswith("text_model."):
            module = "text_model." + module  # transformers >= 5.6 dropped this level; kohya names keep it
        name = _KOHYA_PREFIX[component] + module.replace(".", "_")
        out[f"{name}.{_KOHYA_PART[match[4]]}.weight" if match else f"{name}.alpha"] = value
    return out


def layer_names(lora: dict[str, torch.Tensor]) -> list[str]:
    """The adapted layers of a LoRA (the names before ``.lora_down.weight``), sorted."""
    return sorted(k[: -len(".lora_down.weight")] for k in lora if k.endswith(".lora_down.weight"))


_UNSUPPORTED = {"dora_scale": ".dora_scale", "lora_mid": ".lora_mid.weight", "hada": ".hada_w1_a", "lokr": ".lokr_w1"}


def unsupported_kinds(lora: dict[str, torch.Tensor]) -> list[str]:
    """The LyCORIS/DoRA weight kinds a file holds (LoHa ``hada``, LoKr ``lokr``, Tucker ``lora_mid``,
    DoRA ``dora_scale``), which plain ``up @ down`` would apply wrongly."""
    return [kind for kind, suffix in _UNSUPPORTED.items() if any(k.endswith(suffix) for k in lora)]


def delta(lora: dict[str, torch.Tensor], layer: str, shape: torch.Size, path: Path) -> torch.Tensor:
    """``(alpha / r) · up @ down`` of one layer, in float32, shaped ``shape``."""
    down = lora[f"{layer}.lora_down.weight"].float()
    up = lora.get(f"{layer}.lora_up.weight")
    if up is None:
        raise LoraError(f"{path}: layer {layer} has lora_down but no lora_up weight")
    up = up.float()
    rank = down.shape[0]
    alpha = lora.get(f"{layer}.alpha")
    scale = float(alpha) / rank if alpha is not None else 1.0
    product = up.flatten(1) @ down.flatten(1)
    if product.numel() != shape.numel():
        raise LoraError(f"{path}: layer {layer} is {tuple(product.shape)} (up {tuple(up.shape)} @ down "
                        f"{tuple(down.shape)}), but the model's weight is {tuple(shape)}: the LoRA was made "
                        "for another model family")
    return (product * scale).reshape(shape)


# -------------------------------------------------------------------------------------- applying
def patched_module(module: nn.Module, lora: dict[str, torch.Tensor], targets: dict[str, Target],
                   strength: float, path: Path) -> tuple[nn.Module, list[str]]:
    """A copy of ``module`` with the LoRA layers found in ``targets`` added at ``strength``.

    Returns (the copy, the LoRA layers it applied). The copy shares the memory of every tensor it does
    not change with ``module`` but has Parameter objects of its own: moving one of the two to another
    device (``Module.to`` swaps each Parameter's data in place) never moves the other's weights.
    ``module`` itself is never modified.
    """
    memo: dict[int, object] = {id(b): b for b in module.buffers()}
    memo.update((id(p), nn.Parameter(p.detach(), requires_grad=False)) for p in module.parameters())
    clone = copy.deepcopy(module, memo=memo)
    applied = []
    new: dict[str, torch.Tensor] = {}
    params = dict(clone.named_parameters())
    for layer in layer_names(lora):
        target = targets.get(layer)
        if target is None:
            continue
        current = new.get(target.param)
        if current is None:
            current = params[target.param].detach().float().clone()
        rows = slice(*target.rows) if target.rows else slice(None)
        current[rows] += strength * delta(lora, layer, current[rows].shape, path).to(current.device)
        new[target.param] = current
        applied.append(layer)
    for name, value in new.items():
        owner_path, _, leaf = name.rpartition(".")
        owner = clone.get_submodule(owner_path)
        old = getattr(owner, leaf)
        setattr(owner, leaf, nn.Parameter(value.to(old.dtype), requires_grad=False))
    return clone, applied


# --------------------------------------------------------------------------- model-level helpers
# Per family: encoder slot → the kohya prefixes of its layers (diffusers' "text_encoder" reads as lora_te1_).
TEXT_PREFIXES = {"sd1": {"l": ("lora_te_", "lora_te1_")}, "sd2": {"h": ("lora_te_", "lora_te1_")},
                 "sdxl": {"l": ("lora_te1_",), "g": ("lora_te2_",)}, "sdxl_refiner": {"g": ("lora_te_", "lora_te1_")}}


def apply_to_model(model, lora: dict[str, torch.Tensor], strength: float, path: Path):
    """A copy of a ``DiffusionModel`` whose U-Net carries the LoRA; (copy, layers applied)."""
    unet, applied = patched_module(model.unet, lora, unet_targets(model.unet, model.unet.config), strength, path)
    clone = copy.copy(model)
    clone.unet = unet
    return clone, applied


def apply_to_text_encoder(encoder, lora: dict[str, torch.Tensor], strength: float, path: Path):
    """A copy of an ``SDTextEncoder`` whose encoders carry the LoRA; (copy, layers applied)."""
    models, applied = dict(encoder.models), []
    for slot, prefixes in TEXT_PREFIXES.get(encoder.family, {}).items():
        if slot in models:
            targets = {k: v for prefix in prefixes for k, v in text_targets(models[slot], prefix).items()}
            models[slot], done = patched_module(models[slot], lora, targets, strength, path)
            applied += done
    clone = copy.copy(encoder)
    clone.models = models
    return clone, applied
