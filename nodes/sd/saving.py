"""Model values back to standard single-file safetensors: the checkpoint layout our loader (and
A1111, ComfyUI, diffusers' ``from_single_file``) reads, with modelspec metadata.

Keys are the original (LDM/SGM) ones: the U-Net under ``model.diffusion_model.``, the VAE under
``first_stage_model.``, each text encoder under its family's prefix (``cond_stage_model.…`` for
SD1/SD2, ``conditioner.embedders.N.…`` for SDXL). Weights are those a value runs with: its weight
patches (LoRAs, merges) applied (`merging.weights_in_use`), in the model's own dtype.

Metadata (Stability's "modelspec" 1.0.0, as ComfyUI writes it, for every family):
``modelspec.sai_model_spec``, ``modelspec.architecture`` (stable-diffusion-v1, stable-diffusion-v2-512
/ -768-v, stable-diffusion-xl-v1-base / -refiner), ``modelspec.implementation``, ``modelspec.title``,
``modelspec.resolution``, ``modelspec.predict_key`` (epsilon / v, ComfyUI's key) and
``modelspec.prediction_type`` (the same, the key our loader reads); a v-prediction model also gets
ComfyUI's ``v_pred`` marker tensor.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from .checkpoint import UNET_PREFIX, VAE_PREFIX
from .text_encoders import family_slots

ARCHITECTURES = {("sd1", "eps"): "stable-diffusion-v1", ("sd1", "v"): "stable-diffusion-v1",
                 ("sd2", "eps"): "stable-diffusion-v2-512", ("sd2", "v"): "stable-diffusion-v2-768-v",
                 ("sdxl", "eps"): "stable-diffusion-xl-v1-base", ("sdxl", "v"): "stable-diffusion-xl-v1-base",
                 ("sdxl_refiner", "eps"): "stable-diffusion-xl-v1-refiner",
                 ("sdxl_refiner", "v"): "stable-diffusion-xl-v1-refiner"}
RESOLUTIONS = {"sd1": 512, "sd2": 512, "sdxl": 1024, "sdxl_refiner": 1024}


def prediction_of(model) -> str:
    """"eps" or "v": how the model value's sampling reads the U-Net's output."""
    return "v" if getattr(model.model_sampling, "prediction", "eps") in ("v", "v_prediction") else "eps"


def modelspec(model, title: str) -> dict[str, str]:
    """The modelspec metadata of a checkpoint holding ``model`` (a DiffusionModel)."""
    prediction = prediction_of(model)
    size = 768 if (model.family, prediction) == ("sd2", "v") else RESOLUTIONS[model.family]
    return {"modelspec.sai_model_spec": "1.0.0",
            "modelspec.architecture": ARCHITECTURES[(model.family, prediction)],
            "modelspec.implementation": "sgm" if model.family.startswith("sdxl") else "ldm",
            "modelspec.title": title, "modelspec.resolution": f"{size}x{size}",
            "modelspec.predict_key": "v" if prediction == "v" else "epsilon",
            "modelspec.prediction_type": "v" if prediction == "v" else "epsilon"}


def _prefixed(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in module.state_dict().items()}


def unet_tensors(model) -> dict[str, torch.Tensor]:
    """The U-Net's weights under ``model.diffusion_model.`` (plus ``v_pred`` for a v-prediction model)."""
    out = _prefixed(UNET_PREFIX, model.unet)
    if prediction_of(model) == "v":
        out["v_pred"] = torch.tensor([])
    return out


def text_tensors(clip, family: str | None = None) -> dict[str, torch.Tensor]:
    """Each text encoder's weights under the checkpoint prefix of ``family`` (default: the CLIP's own)."""
    out: dict[str, torch.Tensor] = {}
    for slot in family_slots(family or clip.family):
        if slot.name in clip.models:
            out.update(_prefixed(slot.prefix, clip.models[slot.name]))
    return out


def vae_tensors(vae, prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    """The VAE's LDM weights under ``prefix`` ("" for a standalone VAE file)."""
    return _prefixed(prefix, vae.model)


def clip_files(clip) -> dict[str, dict[str, torch.Tensor]]:
    """CLIPSave's files: one per text encoder, keyed by ComfyUI's file-name suffix ("clip_l", "clip_g",
    "clip_h"), each in its layout within the checkpoint with the checkpoint's prefix removed
    (CLIP-L: transformers' ``text_model.…``; OpenCLIP-H/G: OpenCLIP's ``transformer.resblocks.…``)."""
    files: dict[str, dict[str, torch.Tensor]] = {}
    for slot in family_slots(clip.family):
        module = clip.models.get(slot.name)
        if module is None:
            continue
        prefix = "text_model." if slot.prefix.endswith("text_model.") else ""
        files[f"clip_{slot.name}"] = _prefixed(prefix, module)
    return files


def write_safetensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    """Write ``tensors`` (contiguous CPU copies where needed; shared storage split) with ``metadata``."""
    from safetensors.torch import save_file

    ready: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in tensors.items():
        value = value.detach()
        if value.device.type != "cpu":
            value = value.cpu()
        if not value.is_contiguous() or value.data_ptr() in seen and value.numel():
            value = value.contiguous() if not value.is_contiguous() else value.clone()
        if value.numel():
            seen.add(value.data_ptr())
        ready[key] = value
    save_file(ready, str(path), metadata=dict(metadata))
