"""LoRA files of every common family applied to a checkpoint's U-Net and text encoders.

- :mod:`.files`: reading a file, diffusers/PEFT names to kohya names, PEFT alpha from metadata;
- :mod:`.names`: kohya layer names → our weights (U-Net in diffusers or LDM names, CLIP, OpenCLIP);
- :mod:`.adapters`: the families (LoRA/LoCon with Tucker, LoHa, LoKr, (IA)³, DoRA, full difference),
  one layer at a time: the new weight of one layer from its current weight;
- :mod:`.patching`: the layers as weight patches on a shared model value (what Load LoRA returns);
- :mod:`.apply`: copies of the U-Net / text encoders with a file's layers merged in (the reference).
"""
from .adapters import LayerPatch, is_plain_lora, low_rank_update, parse_layers, patched_bias, patched_weight, weight_delta
from .apply import (apply_to_model, apply_to_text_encoder, delta, layer_names, layers_of, other_families,
                    patched_module)
from .files import LoraError, kohya_names, read_lora
from .patching import model_with_lora, text_encoder_with_lora, weight_patches
from .names import TEXT_PREFIXES, Target, diffusers_unet_name, text_targets, unet_targets

__all__ = ["LayerPatch", "LoraError", "TEXT_PREFIXES", "Target", "apply_to_model", "apply_to_text_encoder", "delta",
           "diffusers_unet_name", "is_plain_lora", "kohya_names", "layer_names", "layers_of", "low_rank_update", "model_with_lora", "other_families", "parse_layers",
           "patched_bias", "patched_module", "patched_weight", "read_lora", "text_encoder_with_lora", "text_targets", "unet_targets",
           "weight_delta", "weight_patches"]
