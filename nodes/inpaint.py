"""Inpainting nodes (ComfyUI's nodes.py, comfy_extras/nodes_ip2p.py): VAEEncodeForInpaint, SetLatentNoiseMask,
InpaintModelConditioning, InstructPixToPixConditioning.

A latent's ``noise_mask`` (1 = repaint) makes every sampler inpaint: before each model call the latent
outside the mask is put back to the original noised to the current level, and the model's denoised
output there is replaced by the original (nodes/sd/guidance.py). Inpainting checkpoints (9-channel
U-Nets) also see the mask and the masked image at every step; InstructPix2Pix checkpoints (8 channels)
see the image to edit (nodes/sd/inpaint.py).
"""
from __future__ import annotations

from typing import Any

from nodegraph import Boolean, Int, RunContext, node
from nodegraph.errors import NodeError

from .conditioning import check_conditioning
from .latent import check_latent
from .runtime import on_device
from .values import check_image, check_mask

INPAINT_OUTPUTS = {"positive": "CONDITIONING", "negative": "CONDITIONING", "latent": "LATENT"}


def _pixels_and_mask(pixels: Any, mask: Any) -> tuple[Any, Any]:
    """The image and its mask as ``[B, 1, H, W]`` at the image's size, both cut to multiples of 8 around
    the middle; a mask batch that is neither 1 nor the image's is refused (ComfyUI fails on it too)."""
    from nodes.sd.inpaint import crop_to_multiple, mask_to_pixels

    pixels, mask = check_image(pixels, "pixels"), check_mask(mask)
    if mask.shape[0] not in (1, pixels.shape[0]):
        raise NodeError(f"pixels {tuple(pixels.shape)} and mask {tuple(mask.shape)} hold {pixels.shape[0]} images "
                        f"and {mask.shape[0]} masks: give one mask for all images or one per image")
    if pixels.shape[1] < 8 or pixels.shape[2] < 8:
        raise NodeError(f"pixels are {pixels.shape[2]}×{pixels.shape[1]}; the VAE needs at least 8×8")
    mask = mask_to_pixels(mask, pixels.shape[1], pixels.shape[2])
    return crop_to_multiple(pixels, mask)


def _encode(vae: Any, pixels: Any, ctx: RunContext) -> Any:
    from .image import _rgb_pixels

    with on_device(ctx.options, vae.model):
        return vae.encode(_rgb_pixels(pixels))


@node("VAEEncodeForInpaint", display_name="VAE Encode (for Inpainting)", category="latent/inpaint",
      inputs={"pixels": "IMAGE", "vae": "VAE", "mask": "MASK"},
      params=[Int("grow_mask_by", 6, min=0, max=64, step=1,
                  description="pixels the repainted area reaches beyond the mask, so that it blends in")],
      outputs={"LATENT": "LATENT"})
def vae_encode_for_inpaint(pixels: Any, vae: Any, mask: Any, grow_mask_by: int, ctx: RunContext) -> dict:
    """Encode an image for inpainting: where the mask is (rounded to 0/1), the pixels are replaced by
    mid-grey before encoding, and the latent carries the mask, grown by grow_mask_by pixels, as its
    noise mask, so the sampler repaints only there. Use denoise 1.0: what was under the mask is gone.
    For a plain checkpoint this is a rough start (the model must invent the grey area from noise); an
    inpainting checkpoint is made for it. The mask is resized to the image; sides that are not multiples
    of 8 are cut, keeping the middle."""
    from nodes.sd.inpaint import grey_fill, grow_mask

    pixels, mask = _pixels_and_mask(pixels, mask)
    grown = grow_mask(mask, grow_mask_by)
    return {"samples": _encode(vae, grey_fill(pixels, mask), ctx), "noise_mask": grown.round()}


@node("SetLatentNoiseMask", display_name="Set Latent Noise Mask", category="latent/inpaint",
      inputs={"samples": "LATENT", "mask": "MASK"}, outputs={"LATENT": "LATENT"})
def set_latent_noise_mask(samples: dict, mask: Any) -> dict:
    """Make a sampler repaint only where the mask is (1 = repaint, soft values blend): the latent is kept
    as it is, so with denoise below 1 the repainted part still follows the original. The mask is resized
    to the latent when sampling (bilinear); a batch of masks is cut or repeated to the latents' batch."""
    check_latent(samples)
    out = dict(samples)
    mask = check_mask(mask)
    out["noise_mask"] = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    return out


def _with_concat(conditioning: list, name: str, **options: Any) -> list:
    return [[context, {**entry_options, **options}] for context, entry_options in check_conditioning(conditioning, name)]


@node("InpaintModelConditioning", display_name="InpaintModelConditioning", category="conditioning/inpaint",
      inputs={"positive": "CONDITIONING", "negative": "CONDITIONING", "vae": "VAE", "pixels": "IMAGE",
              "mask": "MASK"},
      params=[Boolean("noise_mask", True,
                      description="also give the latent the mask as its noise mask, so sampling changes only the "
                                  "masked part (may help or spoil, depending on the model)")],
      outputs=INPAINT_OUTPUTS)
def inpaint_model_conditioning(positive: list, negative: list, vae: Any, pixels: Any, mask: Any, noise_mask: bool,
                               ctx: RunContext) -> tuple[list, list, dict]:
    """Prepare an inpainting checkpoint's extra inputs: the image with the masked part (mask rounded to
    0/1) filled mid-grey is encoded and, with the mask, added to both conditionings; the latent is the
    whole image encoded, so denoise below 1 keeps its colours. Plain checkpoints ignore the extra inputs
    (only the noise mask then acts). The mask is resized to the image; sides that are not multiples of
    8 are cut, keeping the middle."""
    from nodes.sd.inpaint import grey_fill

    original = check_image(pixels, "pixels")
    pixels, mask = _pixels_and_mask(original, mask)
    concat_latent = _encode(vae, grey_fill(pixels, mask), ctx)
    latent = {"samples": _encode(vae, original, ctx)}
    if noise_mask:
        latent["noise_mask"] = mask
    options = {"concat_latent_image": concat_latent, "concat_mask": mask}
    return _with_concat(positive, "positive", **options), _with_concat(negative, "negative", **options), latent


@node("InstructPixToPixConditioning", display_name="InstructPixToPixConditioning",
      category="conditioning/instructpix2pix",
      inputs={"positive": "CONDITIONING", "negative": "CONDITIONING", "vae": "VAE", "pixels": "IMAGE"},
      outputs=INPAINT_OUTPUTS)
def instruct_pix_to_pix_conditioning(positive: list, negative: list, vae: Any, pixels: Any,
                                     ctx: RunContext) -> tuple[list, list, dict]:
    """Prepare an InstructPix2Pix checkpoint (8-channel U-Net): the image to edit is encoded and added to
    both conditionings, and the latent is an empty one of its size; the prompt says what to change
    ("make it snowy"). Other checkpoints ignore the image. Sides that are not multiples of 8 are cut,
    keeping the middle."""
    import torch

    concat_latent = _encode(vae, check_image(pixels, "pixels"), ctx)
    options = {"concat_latent_image": concat_latent}
    return (_with_concat(positive, "positive", **options), _with_concat(negative, "negative", **options),
            {"samples": torch.zeros_like(concat_latent)})


NODES = [vae_encode_for_inpaint, set_latent_noise_mask, inpaint_model_conditioning, instruct_pix_to_pix_conditioning]
