"""Building control models from files: ControlNets (plain and difference), T2I-Adapters, Control-LoRAs."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from nodes.sd.build import fill_module, on_meta

from .cldm import ControlNetConfig, ControlNetModel
from .files import ControlError, ControlFile, read_control
from .runtime import ControlModel
from .t2i import T2IAdapterModel


def load_control(path: str | Path, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                 model=None) -> ControlModel:
    """The control model in ``path``; ``model`` (a DiffusionModel) is the base a difference ControlNet
    adds its weights to (DiffControlNetLoader)."""
    path = Path(path)
    file = read_control(path)
    if file.kind == "control_lora":
        return ControlModel(path, "control_lora", lora=file.tensors)
    if file.difference:
        if model is None:
            raise ControlError(f"{path}: a difference ControlNet, which holds changes to a base model's weights: load "
                               "it with Load ControlNet Model (diff) (DiffControlNetLoader) and connect the model")
        file.tensors = add_base_weights(file, model.unet)
    tensors = {k: v for k, v in file.tensors.items() if k != "difference"}
    make = (lambda: ControlNetModel(file.config)) if file.kind == "controlnet" else (lambda: T2IAdapterModel(file.config))
    module = _filled(make, tensors, dtype, device, file)
    stem = path.stem
    return ControlModel(path, file.kind, module, global_average_pooling=stem.endswith(("_shuffle", "_shuffle_fp16")))


def _filled(make, tensors: dict[str, torch.Tensor], dtype, device, file: ControlFile) -> nn.Module:
    module, missing, unexpected = fill_module(make, dict(tensors), dtype, device)
    if missing or unexpected:
        what = "missing " + ", ".join(missing[:3]) if missing else "unexpected " + ", ".join(unexpected[:3])
        raise ControlError(f"{file.path}: a {file.kind} file whose keys do not fit its own layout ({what})")
    return module


def add_base_weights(file: ControlFile, unet: nn.Module) -> dict[str, torch.Tensor]:
    """A difference ControlNet's tensors plus the base U-Net's weights of the same names."""
    base = unet.state_dict()
    out = {}
    for key, value in file.tensors.items():
        if key in base:
            if base[key].shape != value.shape:
                raise ControlError(f"{file.path}: {key} is {tuple(value.shape)} but the model's is "
                                   f"{tuple(base[key].shape)}: the ControlNet was made for another model family")
            value = value + base[key].to(value.dtype)
        out[key] = value
    return out


def build_control_lora(lora: dict[str, torch.Tensor], unet: nn.Module, path: Path) -> ControlNetModel:
    """A Control-LoRA as a ControlNet on ``unet``: the U-Net's encoder weights, each plus ``up @ down``
    where the file has a low-rank pair for it, every other tensor of the file taken as it is."""
    if "input_hint_block.0.weight" not in lora:
        raise ControlError(f"{path}: a Control-LoRA without input_hint_block weights")
    config = ControlNetConfig(unet.config, lora["input_hint_block.0.weight"].shape[1])
    base = unet.state_dict()
    dtype = next(unet.parameters()).dtype
    device = next(unet.parameters()).device
    tensors: dict[str, torch.Tensor] = {}
    names = on_meta(lambda: ControlNetModel(config)).state_dict()
    for name, meta in names.items():
        if name in lora:
            tensors[name] = lora[name]
        elif name in base:
            tensors[name] = base[name]
        else:
            raise ControlError(f"{path}: no {name} in the Control-LoRA or the model: made for another model family")
        module = name[: -len(".weight")]
        if name.endswith(".weight") and f"{module}.up" in lora:
            up, down = lora[f"{module}.up"].float(), lora[f"{module}.down"].float()
            product = up.flatten(1) @ down.flatten(1)
            if product.numel() != meta.numel():
                raise ControlError(f"{path}: {module}.up @ down is {tuple(product.shape)}, the model's weight is "
                                   f"{tuple(meta.shape)}: the Control-LoRA was made for another model family")
            tensors[name] = tensors[name].float() + product.reshape(meta.shape)
        if tensors[name].shape != meta.shape:
            raise ControlError(f"{path}: {name} is {tuple(tensors[name].shape)}, expected {tuple(meta.shape)}: "
                               "the Control-LoRA was made for another model family")
    module, _, _ = fill_module(lambda: ControlNetModel(config), tensors, dtype, device)
    return module
