"""Compositing nodes: ImageCompositeMasked, LatentCompositeMasked, ImageBlend, PorterDuffImageComposite,
SplitImageWithAlpha, JoinImageWithAlpha (ComfyUI's nodes_mask.py, nodes_post_processing.py,
nodes_compositing.py).

Masks of another size than the picture they apply to are resized to it (bilinear), and a mask or
source batch is cut or repeated to the destination's batch, as in ComfyUI.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Boolean, Combo, Float, InputSpec, Int, node
from nodegraph.errors import InputError

from .values import broadcast_batch, check_image, check_latent, check_mask, check_same_channels, resize_mask

MAX_RESOLUTION = 16384
PORTER_DUFF_MODES = ("ADD", "CLEAR", "DARKEN", "DST", "DST_ATOP", "DST_IN", "DST_OUT", "DST_OVER", "LIGHTEN",
                     "MULTIPLY", "OVERLAY", "SCREEN", "SRC", "SRC_ATOP", "SRC_IN", "SRC_OUT", "SRC_OVER", "XOR")


@node("ImageCompositeMasked", display_name="Image Composite Masked", category="image",
      inputs=[InputSpec("destination", "IMAGE"), InputSpec("source", "IMAGE"),
              InputSpec("mask", "MASK", optional=True, description="where the source shows (1) or not (0)")],
      params=[Int("x", 0, min=0, max=MAX_RESOLUTION, step=1, description="where the source's left edge goes"),
              Int("y", 0, min=0, max=MAX_RESOLUTION, step=1, description="where the source's top edge goes"),
              Boolean("resize_source", False, description="first stretch the source to the destination's size")],
      outputs={"IMAGE": "IMAGE"})
def image_composite_masked(destination: Any, source: Any, x: int, y: int, resize_source: bool,
                           mask: Any = None) -> Any:
    """Paste the source image onto the destination with its top-left corner at (x, y), through the mask
    if one is connected (resized to the source's size). What falls outside the destination is cut off.
    A source with alpha pasted on one without loses its alpha; the reverse gets an opaque alpha."""
    from nodes.sd.compositing import composite, match_alpha

    dest, src = match_alpha(check_image(destination, "destination"), check_image(source, "source"))
    masks = None if mask is None else check_mask(mask)
    out = composite(dest.movedim(-1, 1), src.movedim(-1, 1), x, y, masks, 1, resize_source)
    return out.movedim(1, -1)


@node("LatentCompositeMasked", display_name="Latent Composite Masked", category="latent",
      inputs=[InputSpec("destination", "LATENT"), InputSpec("source", "LATENT"),
              InputSpec("mask", "MASK", optional=True, description="where the source shows (1) or not (0)")],
      params=[Int("x", 0, min=0, max=MAX_RESOLUTION, step=8, description="where the source's left edge goes, "
                                                                         "in image pixels (rounded down to 8)"),
              Int("y", 0, min=0, max=MAX_RESOLUTION, step=8, description="where the source's top edge goes, "
                                                                         "in image pixels (rounded down to 8)"),
              Boolean("resize_source", False, description="first stretch the source to the destination's size")],
      outputs={"LATENT": "LATENT"})
def latent_composite_masked(destination: dict, source: dict, x: int, y: int, resize_source: bool,
                            mask: Any = None) -> dict:
    """Paste the source latent onto the destination at pixel (x, y) — a latent pixel is 8 image pixels —
    through the mask if one is connected (resized to the source's size). The destination's other
    entries (noise mask, batch index) are kept."""
    from nodes.sd.compositing import composite

    dest, src = check_latent(destination, "destination"), check_latent(source, "source")
    check_same_channels(dest, src, "destination", "source")
    out = dict(destination)
    out["samples"] = composite(dest, src, x, y, None if mask is None else check_mask(mask), 8, resize_source)
    return out


@node("ImageBlend", display_name="Image Blend", category="image/postprocessing",
      inputs={"image1": "IMAGE", "image2": "IMAGE"},
      params=[Float("blend_factor", 0.5, min=0.0, max=1.0, step=0.01, description="how much of the blend shows "
                                                                                  "(0: image1 alone)"),
              Combo("blend_mode", ("normal", "multiply", "screen", "overlay", "soft_light", "difference"),
                    description="how the two images combine before mixing")],
      outputs={"IMAGE": "IMAGE"})
def image_blend(image1: Any, image2: Any, blend_factor: float, blend_mode: str) -> Any:
    """Mix image2 into image1: image1·(1 − f) + mode(image1, image2)·f, clamped to 0..1.

    Modes: normal (image2), multiply, screen, overlay, soft light, and difference — which, as in ComfyUI,
    is image1 − image2 (not its absolute value). image2 is resized to image1's size (bicubic, cut to its
    aspect ratio in the middle) if it differs; a batch of one combines with every image of the other.
    """
    from nodes.sd.compositing import blend_images, match_alpha
    from nodes.sd.resize import common_upscale

    image1, image2 = match_alpha(check_image(image1, "image1"), check_image(image2, "image2"))
    broadcast_batch(image1, image2, "image1", "image2")
    if image1.shape[1:] != image2.shape[1:]:
        image2 = common_upscale(image2.movedim(-1, 1), image1.shape[2], image1.shape[1], "bicubic",
                                "center").movedim(1, -1)
    return blend_images(image1, image2.to(image1), blend_factor, blend_mode)


@node("PorterDuffImageComposite", display_name="Porter-Duff Image Composite", category="mask/compositing",
      inputs={"source": "IMAGE", "source_alpha": "MASK", "destination": "IMAGE", "destination_alpha": "MASK"},
      params=[Combo("mode", PORTER_DUFF_MODES, "DST",
                    description="the compositing operator: SRC_OVER puts the source over the destination, "
                                "DST_IN keeps the destination where the source is, ...")],
      outputs={"IMAGE": "IMAGE", "MASK": "MASK"})
def porter_duff_image_composite(source: Any, source_alpha: Any, destination: Any, destination_alpha: Any,
                                mode: str) -> tuple[Any, Any]:
    """Combine two images with their transparency by a Porter-Duff operator (plus ADD, DARKEN, LIGHTEN,
    MULTIPLY, OVERLAY, SCREEN).

    The alphas are MASKs as Load Image gives them (1 = transparent); the outputs are the image and its
    mask in the same convention. The source and the alphas are resized to the destination (bicubic,
    cut to its aspect ratio in the middle). As in ComfyUI, the batch is the smallest of the four inputs'.
    """
    from nodes.sd.compositing import porter_duff
    from nodes.sd.resize import common_upscale

    src, dst = check_image(source, "source"), check_image(destination, "destination")
    src_mask, dst_mask = check_mask(source_alpha, "source_alpha"), check_mask(destination_alpha, "destination_alpha")
    if src.shape[-1] != dst.shape[-1]:
        raise InputError(f"source {tuple(src.shape)} and destination {tuple(dst.shape)} have {src.shape[-1]} and "
                         f"{dst.shape[-1]} channels; both must have the same (e.g. RGB: use Split Image with Alpha)")
    batch = min(len(src), len(dst), len(src_mask), len(dst_mask))
    height, width = dst.shape[1:3]

    def fit(t: Any) -> Any:  # [b, h, w, c] to the destination's size
        if tuple(t.shape[1:3]) == (height, width):
            return t
        return common_upscale(t.movedim(-1, 1), width, height, "bicubic", "center").movedim(1, -1)

    image, alpha = porter_duff(fit(src[:batch]).to(dst), fit(src_mask[:batch, ..., None]).to(dst), dst[:batch],
                               fit(dst_mask[:batch, ..., None]).to(dst), mode)
    return image, alpha.squeeze(-1)


@node("SplitImageWithAlpha", display_name="Split Image with Alpha", category="mask/compositing",
      inputs={"image": "IMAGE"}, outputs={"IMAGE": "IMAGE", "MASK": "MASK"})
def split_image_with_alpha(image: Any) -> tuple[Any, Any]:
    """The colour channels of an image, and its transparency as a mask (1 − alpha; all 0 when the image
    has no alpha channel)."""
    import torch

    image = check_image(image)
    alpha = image[..., 3] if image.shape[-1] == 4 else torch.ones_like(image[..., 0])
    return image[..., :3].clone(), 1.0 - alpha


@node("JoinImageWithAlpha", display_name="Join Image with Alpha", category="mask/compositing",
      inputs={"image": "IMAGE", "alpha": "MASK"}, outputs={"IMAGE": "IMAGE"})
def join_image_with_alpha(image: Any, alpha: Any) -> Any:
    """An RGBA image: the image's colours with alpha = 1 − mask (the mask in Load Image's convention,
    1 = transparent), resized (bilinear) to the image. As in ComfyUI, the batch is the smaller of the two."""
    import torch

    image, masks = check_image(image), check_mask(alpha, "alpha")
    batch = min(len(image), len(masks))
    alpha_channel = 1.0 - resize_mask(masks[:batch].to(image), image.shape[1], image.shape[2])
    rgb = image[:batch, ..., :3] if image.shape[-1] >= 3 else image[:batch].expand(-1, -1, -1, 3)
    return torch.cat([rgb, alpha_channel.unsqueeze(-1)], dim=-1)


NODES = [image_composite_masked, latent_composite_masked, image_blend, porter_duff_image_composite,
         split_image_with_alpha, join_image_with_alpha]
