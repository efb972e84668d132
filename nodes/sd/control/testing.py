"""Random-weight control files in the real layouts, for tests and benches (no downloads).

Every weight is random, the zero convs included (a trained ControlNet's are not zero either, and
zeros would hide a residual added in the wrong place).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from nodes.sd import text_encoders
from nodes.sd.testing import randomize_, save_safetensors, tiny_unet_config
from nodes.sd.unet import UNetConfig, full_config

from .cldm import ControlNetConfig, ControlNetModel
from .t2i import AdapterConfig, T2IAdapterModel


def unet_config_for(family: str, tiny: bool = True) -> UNetConfig:
    """The U-Net config of the tiny (or full) checkpoints of ``family`` that nodes.sd.testing writes."""
    if not tiny:
        return full_config(family)
    return tiny_unet_config(family, text_encoders.text_encoder_state_dicts(family, tiny=True))


def random_controlnet(config: ControlNetConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> ControlNetModel:
    torch.manual_seed(seed)
    return randomize_(ControlNetModel(config), seed, dtype).eval()


def random_adapter(config: AdapterConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> T2IAdapterModel:
    torch.manual_seed(seed)
    return randomize_(T2IAdapterModel(config), seed, dtype).eval()


def adapter_config_for(unet: UNetConfig, kind: str = "full", hint_channels: int = 3) -> AdapterConfig:
    """An adapter whose features fit ``unet`` (``kind``: "full", "full_xl" or "light")."""
    widths = [unet.model_channels * m for m in unet.channel_mult]
    if kind == "full_xl":
        widths = widths + widths[-1:]  # the fourth feature goes after the middle block
    unshuffle = 16 if kind == "full_xl" else 8
    return AdapterConfig(kind, tuple(widths), 4 if kind == "light" else 2, hint_channels * unshuffle ** 2)


def write_random_controlnet(path: str | os.PathLike, family: str, *, seed: int = 0, prefix: str = "",
                            tiny: bool = True, dtype: torch.dtype = torch.float32,
                            extra: dict[str, torch.Tensor] | None = None) -> Path:
    """An original-layout ControlNet for the tiny (or full) ``family`` checkpoints; ``prefix`` is
    "" or "control_model."."""
    model = random_controlnet(ControlNetConfig(unet_config_for(family, tiny)), seed, dtype)
    tensors = {prefix + k: v for k, v in model.state_dict().items()}
    tensors.update(extra or {})
    return save_safetensors(path, tensors)


def write_random_adapter(path: str | os.PathLike, family: str, kind: str = "full", *, seed: int = 0) -> Path:
    """An original-layout T2I-Adapter for the tiny ``family`` checkpoints."""
    model = random_adapter(adapter_config_for(unet_config_for(family), kind), seed)
    return save_safetensors(path, dict(model.state_dict()))


def random_control_lora(unet: UNetConfig, seed: int = 0, rank: int = 4) -> dict[str, torch.Tensor]:
    """A Control-LoRA's tensors for a U-Net of ``unet``: low-rank ``up``/``down`` pairs for every encoder
    weight of 2+ dims, whole tensors for the biases and norms, the hint block, zero convs and
    middle_block_out, and the ``lora_controlnet`` marker."""
    net = random_controlnet(ControlNetConfig(unet), seed)
    g = torch.Generator().manual_seed(seed + 1)
    out: dict[str, torch.Tensor] = {"lora_controlnet": torch.tensor([])}
    own = ("input_hint_block.", "zero_convs.", "middle_block_out.")
    for name, value in net.state_dict().items():
        if value.dim() >= 2 and not name.startswith(own):
            module = name[: -len(".weight")]
            out[module + ".up"] = torch.randn(value.shape[0], rank, *[1] * (value.dim() - 2), generator=g) * 0.05
            out[module + ".down"] = torch.randn(rank, *value.shape[1:], generator=g) * 0.05
        else:
            out[name] = value
    return out
