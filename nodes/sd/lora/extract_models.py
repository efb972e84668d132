"""LoraSave's extraction over model values: the differences a MODEL / CLIP value runs with (its weight
patches applied, e.g. a ModelMergeSubtract's), turned into LoRA entries by :mod:`.extract`."""
from __future__ import annotations

import torch

from nodes.sd.merging import weights_in_use

from .extract import extract_module, extract_text
from .names import TEXT_PREFIXES, text_targets


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in module.named_parameters()}


def extract_lora(model_diff, text_encoder_diff, rank: int, lora_type: str, bias_diff: bool) -> dict[str, torch.Tensor]:
    """The entries of the LoRA file LoraSave writes (see :mod:`.extract` for names and formulas)."""
    out: dict[str, torch.Tensor] = {}
    if model_diff is not None:
        with weights_in_use(model_diff):
            out.update(extract_module("diffusion_model.", _weights(model_diff.unet), rank, lora_type, bias_diff))
    if text_encoder_diff is not None:
        with weights_in_use(text_encoder_diff):
            for slot, prefixes in TEXT_PREFIXES.get(text_encoder_diff.family, {}).items():
                module = text_encoder_diff.models.get(slot)
                if module is not None:
                    out.update(extract_text(text_targets(module, prefixes[0]), _weights(module), rank, lora_type,
                                            bias_diff))
    return out
