"""Mask nodes (ComfyUI's comfy_extras/nodes_mask.py and LoadImageMask): LoadImageMask, MaskToImage,
ImageToMask, ImageColorToMask, SolidMask, InvertMask, CropMask, MaskComposite, FeatherMask, GrowMask,
ThresholdMask, MaskPreview.

A MASK is a float tensor ``[B, H, W]`` in 0..1 (1 = selected: the part to repaint, to keep a prompt in,
to take from a source). Nodes also accept ``[H, W]``, as ComfyUI's do.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Boolean, Combo, Float, Int, RunContext, node
from nodegraph.errors import InputError

from .image import input_image_fingerprint, input_image_param, resolve_image
from .values import check_image, check_mask

MAX_RESOLUTION = 16384
CHANNELS = ("red", "green", "blue", "alpha")


@node("LoadImageMask", display_name="Load Image (as Mask)", category="mask",
      params=[input_image_param(),
              Combo("channel", ("alpha", "red", "green", "blue"),
                    description="alpha: 1 where the image is transparent (as Load Image's MASK); red, green, "
                                "blue: that colour's value")],
      outputs={"MASK": "MASK"}, fingerprint=input_image_fingerprint)
def load_image_mask(image: str, channel: str) -> Any:
    """Read one channel of an image file as a mask.

    The alpha channel gives 1 − alpha (1 where transparent), exactly Load Image's MASK; an image without
    alpha gives an all-zero mask of its size. Red, green or blue give that channel's values (a grey
    image gives its grey level). Every frame of an animated file is one mask of the batch.
    """
    from .imageio import load_image as read

    pixels, alpha_mask = read(resolve_image(image))
    if channel == "alpha":
        return alpha_mask
    return pixels[..., CHANNELS.index(channel)].clone()


@node("MaskToImage", display_name="Convert Mask to Image", category="mask",
      inputs={"mask": "MASK"}, outputs={"IMAGE": "IMAGE"})
def mask_to_image(mask: Any) -> Any:
    """A grey image of the mask: white where the mask is 1, black where it is 0 (all three channels equal)."""
    masks = check_mask(mask)
    return masks.unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()


@node("ImageToMask", display_name="Convert Image to Mask", category="mask",
      inputs={"image": "IMAGE"},
      params=[Combo("channel", CHANNELS, description="the image channel that becomes the mask")],
      outputs={"MASK": "MASK"})
def image_to_mask(image: Any, channel: str) -> Any:
    """One channel of an image as a mask (its values as they are: alpha gives alpha, not 1 − alpha)."""
    image = check_image(image)
    index = CHANNELS.index(channel)
    if image.shape[-1] == 1 and channel != "alpha":
        index = 0
    if index >= image.shape[-1]:
        raise InputError(f"image {tuple(image.shape)} has no alpha channel (it has {image.shape[-1]} channels); "
                         "choose red, green or blue, or join an alpha channel first (Join Image with Alpha)")
    return image[..., index].clone()


@node("ImageColorToMask", display_name="Image Color to Mask", category="mask",
      inputs={"image": "IMAGE"},
      params=[Int("color", 0, min=0, max=0xFFFFFF, step=1,
                  description="the colour as a number 0xRRGGBB (e.g. 16711680 = pure red, 16777215 = white)")],
      outputs={"MASK": "MASK"})
def image_color_to_mask(image: Any, color: int) -> Any:
    """A mask that is 1 where a pixel has exactly this colour and 0 elsewhere (pixels are rounded to
    whole 0..255 steps before comparing)."""
    import torch

    rgb = (torch.clamp(check_image(image)[..., :3], 0.0, 1.0) * 255.0).round().to(torch.int64)
    if rgb.shape[-1] == 1:
        rgb = rgb.expand(*rgb.shape[:-1], 3)
    packed = (rgb[..., 0] << 16) + (rgb[..., 1] << 8) + rgb[..., 2]
    return (packed == color).float()


@node("SolidMask", display_name="Solid Mask", category="mask",
      params=[Float("value", 1.0, min=0.0, max=1.0, step=0.01, description="the value of every pixel"),
              Int("width", 512, min=1, max=MAX_RESOLUTION, step=1),
              Int("height", 512, min=1, max=MAX_RESOLUTION, step=1)],
      outputs={"MASK": "MASK"})
def solid_mask(value: float, width: int, height: int) -> Any:
    """A mask of one size with the same value everywhere (e.g. a canvas for Mask Composite)."""
    import torch

    return torch.full((1, height, width), float(value), dtype=torch.float32)


@node("InvertMask", display_name="Invert Mask", category="mask",
      inputs={"mask": "MASK"}, outputs={"MASK": "MASK"})
def invert_mask(mask: Any) -> Any:
    """1 − mask: what was selected is not, and the other way round."""
    return 1.0 - check_mask(mask)


@node("CropMask", display_name="Crop Mask", category="mask",
      inputs={"mask": "MASK"},
      params=[Int("x", 0, min=0, max=MAX_RESOLUTION, step=1, description="left edge of the crop"),
              Int("y", 0, min=0, max=MAX_RESOLUTION, step=1, description="top edge of the crop"),
              Int("width", 512, min=1, max=MAX_RESOLUTION, step=1),
              Int("height", 512, min=1, max=MAX_RESOLUTION, step=1)],
      outputs={"MASK": "MASK"})
def crop_mask(mask: Any, x: int, y: int, width: int, height: int) -> Any:
    """The rectangle of the mask starting at (x, y), cut where it runs past the mask's edge."""
    masks = check_mask(mask)
    h, w = masks.shape[-2:]
    if x >= w or y >= h:
        raise InputError(f"the crop starts at ({x}, {y}), outside the {w}×{h} mask {tuple(masks.shape)}; "
                         f"choose x below {w} and y below {h}")
    return masks[:, y:y + height, x:x + width].clone()


@node("MaskComposite", display_name="Mask Composite", category="mask",
      inputs={"destination": "MASK", "source": "MASK"},
      params=[Int("x", 0, min=0, max=MAX_RESOLUTION, step=1, description="where the source's left edge goes"),
              Int("y", 0, min=0, max=MAX_RESOLUTION, step=1, description="where the source's top edge goes"),
              Combo("operation", ("multiply", "add", "subtract", "and", "or", "xor"),
                    description="multiply, add, subtract the values; and, or, xor on values rounded to 0 or 1")],
      outputs={"MASK": "MASK"})
def mask_composite(destination: Any, source: Any, x: int, y: int, operation: str) -> Any:
    """Combine the source mask into the destination at (x, y): inside the source's rectangle the two
    are multiplied, added, subtracted, or and-ed/or-ed/xor-ed; outside it the destination stays. The
    result is clamped to 0..1 and has the destination's size. A source batch of one applies to every
    destination mask."""
    from nodes.sd.compositing import mask_composite as combine

    dest, src = check_mask(destination, "destination"), check_mask(source, "source")
    if src.shape[0] not in (1, dest.shape[0]):
        raise InputError(f"destination {tuple(dest.shape)} and source {tuple(src.shape)} have batches of "
                         f"{dest.shape[0]} and {src.shape[0]}: the source must be one mask, or one per destination "
                         "mask (the result has the destination's batch). Make the batches match first")
    return combine(dest, src.to(dest), x, y, operation)


@node("FeatherMask", display_name="Feather Mask", category="mask",
      inputs={"mask": "MASK"},
      params=[Int(side, 0, min=0, max=MAX_RESOLUTION, step=1, description=f"pixels to fade in from the {side} edge")
              for side in ("left", "top", "right", "bottom")],
      outputs={"MASK": "MASK"})
def feather_mask(mask: Any, left: int, top: int, right: int, bottom: int) -> Any:
    """Fade the mask out towards its edges: over the given number of pixels from each edge, values are
    multiplied by a linear ramp from 1/n at the edge to 1 (n = that edge's width)."""
    from nodes.sd.compositing import feather_mask as feather

    return feather(check_mask(mask), left, top, right, bottom)


@node("GrowMask", display_name="Grow Mask", category="mask",
      inputs={"mask": "MASK"},
      params=[Int("expand", 0, min=-MAX_RESOLUTION, max=MAX_RESOLUTION, step=1,
                  description="pixels to grow the mask by (negative: shrink it)"),
              Boolean("tapered_corners", True,
                      description="grow with rounded (diamond) corners; off: square corners")],
      outputs={"MASK": "MASK"})
def grow_mask(mask: Any, expand: int, tapered_corners: bool) -> Any:
    """Grow (dilate) the mask outward by a number of pixels, or shrink (erode) it with a negative
    number, one pixel per step; soft masks grow their brightest values."""
    from nodes.sd.filters import grow_mask as grow

    return grow(check_mask(mask), expand, tapered_corners)


@node("ThresholdMask", display_name="Threshold Mask", category="mask",
      inputs={"mask": "MASK"},
      params=[Float("value", 0.5, min=0.0, max=1.0, step=0.01, description="values above this become 1, the rest 0")],
      outputs={"MASK": "MASK"})
def threshold_mask(mask: Any, value: float) -> Any:
    """A hard mask: 1 where the mask is above the threshold, 0 elsewhere."""
    return (check_mask(mask) > value).float()


@node("MaskPreview", display_name="Preview Mask", category="mask", inputs={"mask": "MASK"}, output_node=True)
def mask_preview(mask: Any, ctx: RunContext) -> None:
    """Show a mask as a grey picture (white = 1) without keeping it, like Preview Image."""
    from .image import preview_image

    preview_image.function(images=mask_to_image.function(mask), ctx=ctx)


NODES = [load_image_mask, mask_to_image, image_to_mask, image_color_to_mask, solid_mask, invert_mask, crop_mask,
         mask_composite, feather_mask, grow_mask, threshold_mask, mask_preview]
