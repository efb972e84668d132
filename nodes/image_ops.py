"""Image transform and batch nodes: ImageCrop, ImageFlip, ImageRotate, ImageInvert, ImagePadForOutpaint,
EmptyImage, GetImageSize, ImageBatch, RepeatImageBatch, ImageFromBatch (ComfyUI's nodes.py and
comfy_extras/nodes_images.py).
"""
from __future__ import annotations

from typing import Any

from nodegraph import Combo, Int, node

from .values import check_image

MAX_RESOLUTION = 16384
ROTATIONS = ("none", "90 degrees", "180 degrees", "270 degrees")
FLIPS = ("x-axis: vertically", "y-axis: horizontally")


def quarter_turns(rotation: str) -> int:
    """How many quarter turns clockwise a ROTATIONS choice means."""
    return ROTATIONS.index(rotation)


@node("ImageCrop", display_name="Image Crop", category="image/transform",
      inputs={"image": "IMAGE"},
      params=[Int("width", 512, min=1, max=MAX_RESOLUTION, step=1),
              Int("height", 512, min=1, max=MAX_RESOLUTION, step=1),
              Int("x", 0, min=0, max=MAX_RESOLUTION, step=1, description="left edge of the crop"),
              Int("y", 0, min=0, max=MAX_RESOLUTION, step=1, description="top edge of the crop")],
      outputs={"IMAGE": "IMAGE"})
def image_crop(image: Any, width: int, height: int, x: int, y: int) -> Any:
    """The width×height rectangle of the images starting at (x, y). A start past the edge moves to the
    last pixel, and a rectangle running past the edge is cut there (so the result can be smaller)."""
    image = check_image(image)
    x, y = min(x, image.shape[2] - 1), min(y, image.shape[1] - 1)
    return image[:, y:y + height, x:x + width, :].clone()


@node("ImageFlip", display_name="Image Flip", category="image/transform",
      inputs={"image": "IMAGE"},
      params=[Combo("flip_method", FLIPS, description="x-axis: upside down; y-axis: mirrored left to right")],
      outputs={"IMAGE": "IMAGE"})
def image_flip(image: Any, flip_method: str) -> Any:
    """Flip images upside down (about the x axis) or mirror them left to right (about the y axis)."""
    import torch

    return torch.flip(check_image(image), dims=[1 if flip_method.startswith("x") else 2])


@node("ImageRotate", display_name="Image Rotate", category="image/transform",
      inputs={"image": "IMAGE"}, params=[Combo("rotation", ROTATIONS, description="clockwise")],
      outputs={"IMAGE": "IMAGE"})
def image_rotate(image: Any, rotation: str) -> Any:
    """Rotate images clockwise by a quarter, half or three-quarter turn (width and height swap for 90/270)."""
    import torch

    return torch.rot90(check_image(image), k=quarter_turns(rotation), dims=[2, 1]).contiguous()


@node("ImageInvert", display_name="Invert Image", category="image",
      inputs={"image": "IMAGE"}, outputs={"IMAGE": "IMAGE"})
def image_invert(image: Any) -> Any:
    """The negative of the images: 1 − value in every channel (alpha too, as ComfyUI)."""
    return 1.0 - check_image(image)


@node("ImagePadForOutpaint", display_name="Pad Image for Outpainting", category="image",
      inputs={"image": "IMAGE"},
      params=[Int(side, 0, min=0, max=MAX_RESOLUTION, step=8, description=f"pixels to add on the {side}")
              for side in ("left", "top", "right", "bottom")]
      + [Int("feathering", 40, min=0, max=MAX_RESOLUTION, step=1,
             description="pixels inside the old edge over which the mask fades from the new area into the image")],
      outputs={"IMAGE": "IMAGE", "MASK": "MASK"})
def image_pad_for_outpaint(image: Any, left: int, top: int, right: int, bottom: int, feathering: int
                           ) -> tuple[Any, Any]:
    """Enlarge the canvas for outpainting: the images on a grey (0.5) canvas grown by the given pixels on
    each side, and a mask that is 1 on the new area and 0 on the old image.

    With feathering f, the mask reaches into the image along each padded side: a pixel d pixels inside it
    gets ((f − d)/f)², so the repainted area blends into the old picture. Feathering applies only when 2f
    is smaller than the image's width and height.
    """
    from nodes.sd.compositing import outpaint_padding

    return outpaint_padding(check_image(image).float(), left, top, right, bottom, feathering)


@node("EmptyImage", display_name="Empty Image", category="image",
      params=[Int("width", 512, min=1, max=MAX_RESOLUTION, step=1),
              Int("height", 512, min=1, max=MAX_RESOLUTION, step=1),
              Int("batch_size", 1, min=1, max=4096),
              Int("color", 0, min=0, max=0xFFFFFF, step=1, description="the colour as a number 0xRRGGBB "
                                                                       "(0 = black, 16777215 = white)")],
      outputs={"IMAGE": "IMAGE"})
def empty_image(width: int, height: int, batch_size: int, color: int) -> Any:
    """A batch of images filled with one colour."""
    import torch

    rgb = torch.tensor([(color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF], dtype=torch.float32) / 255.0
    return rgb.expand(batch_size, height, width, 3).contiguous()


@node("GetImageSize", display_name="Get Image Size", category="image",
      inputs={"image": "IMAGE"}, outputs={"width": "INT", "height": "INT", "batch_size": "INT"})
def get_image_size(image: Any) -> tuple[int, int, int]:
    """The width and height of the images in pixels, and how many there are."""
    image = check_image(image)
    return int(image.shape[2]), int(image.shape[1]), int(image.shape[0])


@node("ImageBatch", display_name="Batch Images", category="image/batch",
      inputs={"image1": "IMAGE", "image2": "IMAGE"}, outputs={"IMAGE": "IMAGE"})
def image_batch(image1: Any, image2: Any) -> Any:
    """One batch of image1's images followed by image2's. image2 is resized (bilinear, cut to the aspect
    ratio in the middle) to image1's size if it differs; an image without alpha gets an opaque one when
    the other has alpha."""
    import torch
    import torch.nn.functional as F

    from nodes.sd.resize import common_upscale

    image1, image2 = check_image(image1, "image1"), check_image(image2, "image2")
    if image1.shape[-1] == 1 or image2.shape[-1] == 1:
        image1, image2 = (i.expand(-1, -1, -1, 3) if i.shape[-1] == 1 else i for i in (image1, image2))
    if image1.shape[-1] != image2.shape[-1]:
        image1, image2 = (F.pad(i, (0, 1), value=1.0) if i.shape[-1] == 3 else i for i in (image1, image2))
    if image1.shape[1:] != image2.shape[1:]:
        image2 = common_upscale(image2.movedim(-1, 1), image1.shape[2], image1.shape[1], "bilinear",
                                "center").movedim(1, -1)
    return torch.cat((image1, image2.to(image1)), dim=0)


@node("RepeatImageBatch", display_name="Repeat Image Batch", category="image/batch",
      inputs={"image": "IMAGE"}, params=[Int("amount", 1, min=1, max=4096, description="how many copies")],
      outputs={"IMAGE": "IMAGE"})
def repeat_image_batch(image: Any, amount: int) -> Any:
    """The batch repeated: all its images, then all of them again, "amount" times in all."""
    return check_image(image).repeat((amount, 1, 1, 1))


@node("ImageFromBatch", display_name="Image From Batch", category="image/batch",
      inputs={"image": "IMAGE"},
      params=[Int("batch_index", 0, min=-MAX_RESOLUTION, max=MAX_RESOLUTION,
                  description="first image to take (0-based; negative counts from the end)"),
              Int("length", 1, min=1, max=4096, description="how many images to take")],
      outputs={"IMAGE": "IMAGE"})
def image_from_batch(image: Any, batch_index: int, length: int) -> Any:
    """Take "length" images from a batch starting at "batch_index" (kept inside the batch; a negative
    index counts from the end)."""
    image = check_image(image)
    batch = image.shape[0]
    if batch_index < 0:
        batch_index += batch
    start = max(0, min(batch - 1, batch_index))
    return image[start:start + min(batch - start, length)].clone()


NODES = [image_crop, image_flip, image_rotate, image_invert, image_pad_for_outpaint, empty_image, get_image_size,
         image_batch, repeat_image_batch, image_from_batch]
