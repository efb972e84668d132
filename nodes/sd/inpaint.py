"""Inpainting and InstructPix2Pix U-Nets: the extra input channels they take, and the arithmetic of the
inpainting nodes.

An inpainting U-Net (SD1.5-, SD2- and SDXL-inpainting) has 9 input channels: the noisy latent (4),
then a mask (1, 1 = repaint) and the latent of the image with the masked part filled grey (4). An
InstructPix2Pix U-Net has 8: the noisy latent, then the latent of the image to edit. Both are told
apart from plain U-Nets by the width of their first convolution (``input_blocks.0.0.weight``), as
ComfyUI does. What fills the extra channels — ComfyUI's ``concat_cond`` rules:

- inpainting: the conditioning's ``concat_mask`` (InpaintModelConditioning) or else the sampler's
  noise mask, resized to the latent (bilinear, centre crop) and rounded to 0/1; the conditioning's
  ``concat_latent_image`` scaled into the U-Net's latent space, or else the latent being sampled.
  Without any mask: a mask of ones and ComfyUI's fixed per-channel latent of a blank image, i.e.
  "repaint everything", so the model does plain text-to-image.
- InstructPix2Pix: the conditioning's ``concat_latent_image`` as it is (not scaled), else zeros.

The concatenated channels are the same at every step; ``concat_input`` builds them once per
conditioning entry (guidance.py crops them to the entry's area like the latent).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from .resize import common_upscale

LATENT_CHANNELS = 4
INPAINT, IP2P = "inpaint", "ip2p"
EXTRA_CHANNELS = {INPAINT: 5, IP2P: 4}
"""Input channels beyond the latent's: mask + masked-image latent, or the image latent."""

BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)
"""ComfyUI's per-channel values of the masked-image latent when no mask is given (its "blank" image)."""


def unet_in_channels(unet: Any) -> int | None:
    """The input channels of a U-Net built from a ``UNetConfig`` (None for other modules)."""
    config = getattr(unet, "config", None)
    return getattr(config, "in_channels", None)


def concat_kind(unet: Any) -> str | None:
    """"inpaint" for a 9-channel U-Net, "ip2p" for an 8-channel one, None otherwise."""
    channels = unet_in_channels(unet)
    for kind, extra in EXTRA_CHANNELS.items():
        if channels == LATENT_CHANNELS + extra:
            return kind
    return None


def latent_channels(unet: Any) -> int | None:
    """How many channels the latents a U-Net samples have (its inputs minus the extra ones)."""
    channels = unet_in_channels(unet)
    if channels is None:
        return None
    kind = concat_kind(unet)
    return channels - EXTRA_CHANNELS[kind] if kind else channels


def resize_to_batch_size(t: torch.Tensor, batch: int) -> torch.Tensor:
    """``t`` resampled along dim 0 to ``batch`` entries by nearest index (ComfyUI's ``resize_to_batch_size``:
    unlike repeating, a batch of 2 stretched to 4 gives a, a, b, b)."""
    n = t.shape[0]
    if n == batch:
        return t
    if batch <= 1:
        return t[:batch]
    if batch < n:
        scale = (n - 1) / (batch - 1)
        index = [min(round(i * scale), n - 1) for i in range(batch)]
    else:
        scale = n / batch
        index = [min(math.floor((i + 0.5) * scale), n - 1) for i in range(batch)]
    return t[index]


def _fit(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``t [b, c, h', w']`` at the latent's height and width (bilinear, centre crop) and batch."""
    batch, height, width = int(shape[0]), int(shape[2]), int(shape[3])
    if tuple(t.shape[-2:]) != (height, width):
        t = common_upscale(t, width, height, "bilinear", "center")
    return resize_to_batch_size(t, batch)


def blank_inpaint_latent(shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """The masked-image latent an inpainting model gets when no mask is given ([B, 4, h, w])."""
    values = torch.tensor(BLANK_INPAINT_LATENT, dtype=torch.float32, device=device)
    return values.view(1, -1, 1, 1).expand(int(shape[0]), -1, int(shape[2]), int(shape[3])).clone()


def inpaint_concat(options: Mapping[str, Any], shape: Sequence[int], latent_image: torch.Tensor | None,
                   denoise_mask: torch.Tensor | None, latent_scale: float) -> torch.Tensor:
    """The 5 extra channels of an inpainting U-Net for one conditioning entry (see the module docstring).

    ``latent_image``: the latent being sampled, already in the U-Net's space; ``denoise_mask``: the
    sampler's noise mask at latent size ([B, C, h, w] or [B, 1, h, w]), or None.
    """
    mask = options.get("concat_mask", denoise_mask)
    batch, _, height, width = (int(v) for v in shape)
    if mask is None:
        return torch.cat([torch.ones(batch, 1, height, width), blank_inpaint_latent(shape)], dim=1)
    image = options.get("concat_latent_image")
    image = latent_image if image is None else image.float() * latent_scale
    if image is None:
        image = torch.zeros(tuple(int(v) for v in shape))
    if mask.ndim == 4:
        mask = mask[:, :1]
    mask = mask.float().reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    if tuple(mask.shape[-2:]) != (height, width):
        mask = common_upscale(mask.cpu(), width, height, "bilinear", "center")
    mask = resize_to_batch_size(mask.round(), batch)
    return torch.cat([mask.cpu(), _fit(image.float().cpu(), shape)], dim=1)


def ip2p_concat(options: Mapping[str, Any], shape: Sequence[int]) -> torch.Tensor:
    """The 4 extra channels of an InstructPix2Pix U-Net: the image latent as it is, else zeros."""
    image = options.get("concat_latent_image")
    if image is None:
        return torch.zeros(tuple(int(v) for v in shape))
    return _fit(image.float().cpu(), shape)


def concat_input(model: Any, options: Mapping[str, Any], shape: Sequence[int], device: torch.device,
                 latent_image: torch.Tensor | None = None,
                 denoise_mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """The channels concatenated to the noisy latent for a conditioning entry with ``options``, on
    ``device``; None for a model without extra inputs (any ``concat_*`` option is then ignored, as
    ComfyUI ignores them for plain models)."""
    kind = concat_kind(model.unet)
    if kind == INPAINT:
        out = inpaint_concat(options, shape, None if latent_image is None else latent_image.cpu(),
                             None if denoise_mask is None else denoise_mask.cpu(), model.latent_scale)
    elif kind == IP2P:
        out = ip2p_concat(options, shape)
    else:
        return None
    return out.to(device)


def check_latent_channels(model: Any, latent: torch.Tensor) -> None:
    """A latent whose channels do not fit the U-Net (with its inpainting/ip2p extra inputs) is a
    NodeError naming the checkpoint, instead of a convolution's shape error."""
    expected = latent_channels(model.unet)
    if expected is None or latent.shape[1] == expected:
        return
    from nodegraph.errors import NodeError

    kind = concat_kind(model.unet)
    what = {"inpaint": "an inpainting U-Net (9 input channels: the latent's 4, the mask and the masked image's 4)",
            "ip2p": "an InstructPix2Pix U-Net (8 input channels: the latent's 4 and the image's 4)"}.get(
        kind, f"a U-Net with {expected} input channels")
    name = getattr(model, "source", None) or "(unnamed)"
    raise NodeError(f"checkpoint {name} is {what}: it samples {expected}-channel latents, but the latent has "
                    f"{latent.shape[1]} channels (shape {tuple(latent.shape)}). Use a latent made for this "
                    "checkpoint (Empty Latent Image, VAE Encode with its VAE)")


# -- the nodes' arithmetic ---------------------------------------------------------------------------
def grey_fill(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pixels ``[B, H, W, C]`` with the RGB of every pixel where the rounded ``mask [B or 1, 1, H, W]``
    is 1 set to mid-grey 0.5, other pixels and channels exactly as they were (ComfyUI computes
    ``(p − 0.5)·(1 − round(mask)) + 0.5``, which can move a kept pixel by one float rounding)."""
    grey = (mask.round() == 1).squeeze(1).unsqueeze(-1)
    out = pixels.clone()
    out[..., :3] = torch.where(grey, torch.full_like(pixels[..., :3], 0.5), pixels[..., :3])
    return out


def grow_mask(mask: torch.Tensor, grow_by: int) -> torch.Tensor:
    """VAEEncodeForInpaint's growth of a ``[B, 1, H, W]`` mask: the rounded mask summed over a
    ``grow_by``×``grow_by`` box (padding ⌈(grow_by − 1)/2⌉ on each side, so an even box reaches one pixel
    further right and down), clamped to 0..1; cut back to H×W. ``grow_by`` 0 returns the mask as it is."""
    if grow_by == 0:
        return mask
    kernel = torch.ones((1, 1, grow_by, grow_by), dtype=mask.dtype)
    padding = math.ceil((grow_by - 1) / 2)
    grown = torch.clamp(F.conv2d(mask.round(), kernel, padding=padding), 0, 1)
    return grown[:, :, :mask.shape[2], :mask.shape[3]]


def crop_to_multiple(pixels: torch.Tensor, mask: torch.Tensor, multiple: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels ``[B, H, W, C]`` and mask ``[B, 1, H, W]`` cut to multiples of ``multiple``, keeping the
    middle (the offset rounds down, as ComfyUI's VAE nodes)."""
    h, w = pixels.shape[1] // multiple * multiple, pixels.shape[2] // multiple * multiple
    if (h, w) == tuple(pixels.shape[1:3]):
        return pixels, mask
    y, x = (pixels.shape[1] % multiple) // 2, (pixels.shape[2] % multiple) // 2
    return pixels[:, y:y + h, x:x + w], mask[:, :, y:y + h, x:x + w]


def mask_to_pixels(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A MASK (``[H, W]``, ``[B, H, W]`` or ``[B, 1, H, W]``) as ``[B, 1, height, width]``, resized bilinearly
    (ComfyUI's inpainting nodes resize it so, whatever its size)."""
    mask = mask.float().reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    if tuple(mask.shape[-2:]) == (height, width):
        return mask
    return F.interpolate(mask, size=(height, width), mode="bilinear")
