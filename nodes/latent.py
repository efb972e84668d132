"""Latent nodes: EmptyLatentImage, LatentUpscale, LatentUpscaleBy, LatentFromBatch.

A LATENT value is ComfyUI's dict ``{"samples": Tensor[B, 4, H/8, W/8], "batch_index"?: [int, ...],
"noise_mask"?: Tensor}`` in raw VAE space (the sampler applies the model's scale factor).
"""
from __future__ import annotations

from typing import Any

from nodegraph import Combo, Float, Int, node
from nodegraph.errors import InputError

MAX_RESOLUTION = 16384
LATENT_UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp")
CROP_METHODS = ("disabled", "center")


def check_latent(latent: Any, name: str = "samples") -> Any:
    """The ``samples`` tensor of a LATENT value, or a ValueError saying what the input should be."""
    import torch

    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), torch.Tensor):
        raise InputError(f"{name} is not a LATENT value ({{'samples': tensor [B,4,h,w]}}); connect a "
                         "latent output such as EmptyLatentImage's or VAEEncode's")
    samples = latent["samples"]
    if samples.ndim != 4:
        raise InputError(f"{name} must hold samples [batch, channels, height, width], got shape "
                         f"{tuple(samples.shape)}")
    return samples


@node("EmptyLatentImage", display_name="Empty Latent Image", category="latent",
      params=[Int("width", 512, min=16, max=MAX_RESOLUTION, step=8, multiple_of=8,
                  description="image width in pixels (a multiple of 8: the VAE works on 8×8 blocks)"),
              Int("height", 512, min=16, max=MAX_RESOLUTION, step=8, multiple_of=8,
                  description="image height in pixels (a multiple of 8: the VAE works on 8×8 blocks)"),
              Int("batch_size", 1, min=1, max=4096, description="how many images")],
      outputs={"LATENT": "LATENT"})
def empty_latent_image(width: int, height: int, batch_size: int) -> dict:
    """A batch of empty (all-zero) latents for a ``width``×``height`` image, the start of text-to-image."""
    import torch

    for name, value in (("width", width), ("height", height)):
        if value % 8:
            raise InputError(f"{name} {value} is not a multiple of 8 (the VAE works on 8×8 pixel blocks); "
                             f"use {value // 8 * 8} or {value // 8 * 8 + 8}")
        if value < 8:
            raise InputError(f"{name} {value} is too small: at least 8 pixels")
    if batch_size < 1:
        raise InputError(f"batch_size {batch_size}: a batch needs at least 1 image")
    return {"samples": torch.zeros([batch_size, 4, height // 8, width // 8])}


@node("LatentUpscale", display_name="Upscale Latent", category="latent",
      inputs={"samples": "LATENT"},
      params=[Combo("upscale_method", LATENT_UPSCALE_METHODS),
              Int("width", 512, min=0, max=MAX_RESOLUTION, step=8,
                  description="target width in pixels; 0 keeps the aspect ratio from height"),
              Int("height", 512, min=0, max=MAX_RESOLUTION, step=8,
                  description="target height in pixels; 0 keeps the aspect ratio from width"),
              Combo("crop", CROP_METHODS)],
      outputs={"LATENT": "LATENT"})
def latent_upscale(samples: dict, upscale_method: str, width: int, height: int, crop: str) -> dict:
    """Resize latents to a pixel size (e.g. for a "hires fix" second pass)."""
    from nodes.sd.resize import scale_latent

    out = dict(samples)
    out["samples"] = scale_latent(check_latent(samples), upscale_method, width, height, crop)
    return out


@node("LatentUpscaleBy", display_name="Upscale Latent By", category="latent",
      inputs={"samples": "LATENT"},
      params=[Combo("upscale_method", LATENT_UPSCALE_METHODS),
              Float("scale_by", 1.5, min=0.01, max=8.0, step=0.01)],
      outputs={"LATENT": "LATENT"})
def latent_upscale_by(samples: dict, upscale_method: str, scale_by: float) -> dict:
    """Resize latents by a factor (sides rounded to whole latent pixels)."""
    from nodes.sd.resize import scale_latent_by

    out = dict(samples)
    out["samples"] = scale_latent_by(check_latent(samples), upscale_method, scale_by)
    return out


@node("LatentFromBatch", display_name="Latent From Batch", category="latent/batch",
      inputs={"samples": "LATENT"},
      params=[Int("batch_index", 0, min=0, max=63, description="first latent to take (0-based)"),
              Int("length", 1, min=1, max=64, description="how many latents to take")],
      outputs={"LATENT": "LATENT"})
def latent_from_batch(samples: dict, batch_index: int, length: int) -> dict:
    """Take ``length`` latents from a batch, starting at ``batch_index`` (clamped to the batch).

    The result remembers each latent's position in the original batch (``batch_index``), so
    sampling it reproduces the noise those images had in the whole batch.
    """
    latents = check_latent(samples)
    batch = latents.shape[0]
    if batch == 0:
        raise InputError("samples is an empty batch (0 latents): there is nothing to take")
    start = min(batch - 1, batch_index)
    length = min(batch - start, length)
    out = dict(samples)
    out["samples"] = latents[start:start + length].clone()
    mask = samples.get("noise_mask")
    if mask is not None:
        if mask.shape[0] == 1:
            out["noise_mask"] = mask.clone()
        else:
            if mask.shape[0] < batch:
                reps = -(-batch // mask.shape[0])
                mask = mask.repeat(reps, *([1] * (mask.ndim - 1)))[:batch]
            out["noise_mask"] = mask[start:start + length].clone()
    previous = samples.get("batch_index")
    out["batch_index"] = (list(previous[start:start + length]) if previous is not None
                          else list(range(start, start + length)))
    return out


NODES = [empty_latent_image, latent_upscale, latent_upscale_by, latent_from_batch]
