"""Checking the tensors that flow between nodes and fitting them to each other, as ComfyUI does.

- ``check_image(value, name)``: an IMAGE ``[B, H, W, C]`` (C = 1, 3 or 4), or a ValueError saying what
  the input should be.
- ``check_mask(value, name)``: a MASK as ``[B, H, W]`` float; ``[H, W]`` and ``[B, 1, H, W]`` (a latent's
  noise mask) are accepted and reshaped, as ComfyUI's nodes reshape them.
- ``repeat_to_batch(t, batch)``: ComfyUI's ``repeat_to_batch_size``: cut a longer batch, repeat a shorter one.
- ``broadcast_batch(a, b, ...)``: the batch two inputs combine to when one of them is 1 or both are equal;
  any other pair is the mismatch ComfyUI refuses too, and the error names both inputs and shapes.
- ``resize_mask(mask, height, width)``: a mask at another size, bilinear (ComfyUI's mask resizing).
- ``check_same_channels(a, b, ...)``: latents (channel dim 1) of one kind of model, or a ValueError.

Importing this module does not import torch.
"""
from __future__ import annotations

from typing import Any
from nodegraph.errors import InputError

from .latent import check_latent

__all__ = ["broadcast_batch", "check_image", "check_latent", "check_mask", "check_same_channels", "repeat_to_batch",
           "resize_mask", "shape_of"]


def shape_of(value: Any) -> str:
    """A value's shape as text for an error message (its type name when it is not a tensor)."""
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else type(value).__name__


def check_image(value: Any, name: str = "image") -> Any:
    """``value`` if it is an IMAGE tensor ``[B, H, W, C]`` with at least one image and pixel."""
    import torch

    if not isinstance(value, torch.Tensor) or value.ndim != 4:
        raise InputError(f"{name} must be an IMAGE tensor [batch, height, width, channels], got {shape_of(value)}; "
                         "connect an image output such as Load Image's or VAE Decode's")
    if value.shape[0] == 0 or value.shape[1] == 0 or value.shape[2] == 0:
        raise InputError(f"{name} is empty (shape {tuple(value.shape)}): there is no image to work on")
    if value.shape[3] not in (1, 3, 4):
        raise InputError(f"{name} has {value.shape[3]} channels; an IMAGE has 3 (RGB), 4 (RGBA) or 1 (grey)")
    return value


def check_mask(value: Any, name: str = "mask") -> Any:
    """A MASK as a float tensor ``[B, H, W]`` (``[H, W]`` and ``[B, 1, H, W]`` are reshaped)."""
    import torch

    if not isinstance(value, torch.Tensor) or value.ndim not in (2, 3, 4) or (value.ndim == 4 and value.shape[1] != 1):
        raise InputError(f"{name} must be a MASK tensor [batch, height, width], got {shape_of(value)}; connect a "
                         "mask output such as Load Image's MASK or Solid Mask's")
    mask = value.reshape(-1, value.shape[-2], value.shape[-1])
    if mask.numel() == 0:
        raise InputError(f"{name} is empty (shape {tuple(value.shape)}): there is no mask to work on")
    return mask if mask.is_floating_point() else mask.float()


def repeat_to_batch(t: Any, batch: int) -> Any:
    """``t`` with exactly ``batch`` entries along dim 0 (nodes/sd/compositing.py's ``repeat_to_batch``)."""
    from nodes.sd.compositing import repeat_to_batch as fit

    return fit(t, batch)


def broadcast_batch(a: Any, b: Any, name_a: str, name_b: str) -> int:
    """The batch size of ``a`` combined with ``b``: equal batches, or one of them 1 (it is used for every
    entry of the other). Other pairs raise a ValueError naming both inputs and their shapes."""
    na, nb = int(a.shape[0]), int(b.shape[0])
    if na == nb or nb == 1 or na == 1:
        return max(na, nb)
    raise InputError(f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} have batches of {na} and {nb}: "
                     "they combine only when the batches are equal or one of them is a single entry. Make the "
                     "batches match (e.g. with Repeat Image Batch or Image From Batch)")


def resize_mask(mask: Any, height: int, width: int) -> Any:
    """``mask [B, H, W]`` resized to ``[B, height, width]``, bilinear (unchanged when already that size)."""
    import torch.nn.functional as F

    if tuple(mask.shape[-2:]) == (height, width):
        return mask
    return F.interpolate(mask.unsqueeze(1), size=(height, width), mode="bilinear").squeeze(1)


def check_same_channels(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Latents ``[B, C, h, w]`` with different channel counts come from different kinds of model (SD's 4
    channels, others' 16) and cannot be combined: a ValueError naming both inputs and shapes."""
    if a.shape[1] != b.shape[1]:
        raise InputError(f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} have {a.shape[1]} and "
                         f"{b.shape[1]} channels: they come from different kinds of model and cannot be combined")
