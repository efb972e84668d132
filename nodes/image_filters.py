"""Image filter nodes: ImageBlur, ImageSharpen, ImageQuantize, Morphology, Canny (ComfyUI's
comfy_extras/nodes_post_processing.py, nodes_morphology.py, nodes_canny.py). The arithmetic is in
nodes/sd/filters.py.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Combo, Float, Int, node

from .values import check_image

MORPHOLOGY_OPERATIONS = ("erode", "dilate", "open", "close", "gradient", "bottom_hat", "top_hat")
DITHER_METHODS = ("none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16")


@node("ImageBlur", display_name="Image Blur", category="image/postprocessing",
      inputs={"image": "IMAGE"},
      params=[Int("blur_radius", 1, min=1, max=31, step=1, description="kernel reach in pixels (side 2r+1)"),
              Float("sigma", 1.0, min=0.1, max=10.0, step=0.1,
                    description="spread of the Gaussian relative to the radius (σ·r pixels)")],
      outputs={"IMAGE": "IMAGE"})
def image_blur(image: Any, blur_radius: int, sigma: float) -> Any:
    """Blur images with a Gaussian kernel of side 2·radius+1 whose spread is sigma·radius pixels; the
    image is mirrored at its borders. Every channel is blurred, alpha included."""
    from nodes.sd.filters import gaussian_blur

    return gaussian_blur(check_image(image).float(), blur_radius, sigma)


@node("ImageSharpen", display_name="Image Sharpen", category="image/postprocessing",
      inputs={"image": "IMAGE"},
      params=[Int("sharpen_radius", 1, min=1, max=31, step=1, description="kernel reach in pixels (side 2r+1)"),
              Float("sigma", 1.0, min=0.1, max=10.0, step=0.01,
                    description="spread of the Gaussian relative to the radius (σ·r pixels)"),
              Float("alpha", 1.0, min=0.0, max=5.0, step=0.01, description="strength (0: unchanged)")],
      outputs={"IMAGE": "IMAGE"})
def image_sharpen(image: Any, sharpen_radius: int, sigma: float, alpha: float) -> Any:
    """Sharpen images by unsharp masking: (1 + 10·alpha)·image − 10·alpha·blurred, clamped to 0..1, with
    Image Blur's Gaussian."""
    from nodes.sd.filters import sharpen

    return sharpen(check_image(image).float(), sharpen_radius, sigma, alpha)


@node("ImageQuantize", display_name="Image Quantize", category="image/postprocessing",
      inputs={"image": "IMAGE"},
      params=[Int("colors", 256, min=1, max=256, step=1, description="palette size"),
              Combo("dither", DITHER_METHODS, description="none, error diffusion (Floyd-Steinberg), or an "
                                                          "ordered Bayer pattern of side 2..16")],
      outputs={"IMAGE": "IMAGE"})
def image_quantize(image: Any, colors: int, dither: str) -> Any:
    """Reduce each image to a palette of at most "colors" colours (chosen per image by median cut),
    optionally dithered. Alpha passes through unchanged."""
    from nodes.sd.filters import quantize

    return quantize(check_image(image), colors, dither)


@node("Morphology", display_name="ImageMorphology", category="image/postprocessing",
      inputs={"image": "IMAGE"},
      params=[Combo("operation", MORPHOLOGY_OPERATIONS,
                    description="erode shrinks bright areas, dilate grows them; open/close = erode then dilate / "
                                "dilate then erode; gradient = dilate − erode; top_hat = image − open; "
                                "bottom_hat = close − image"),
              Int("kernel_size", 3, min=3, max=999, step=1, description="side of the square neighbourhood")],
      outputs={"IMAGE": "IMAGE"})
def morphology(image: Any, operation: str, kernel_size: int) -> Any:
    """Grey-level morphology with a square neighbourhood, per channel: erosion takes the darkest value
    around each pixel, dilation the brightest; pixels outside the image take no part."""
    from nodes.sd.filters import morphology as apply

    return apply(check_image(image).float(), operation, kernel_size)


@node("Canny", display_name="Canny", category="image/preprocessors",
      inputs={"image": "IMAGE"},
      params=[Float("low_threshold", 0.4, min=0.01, max=0.99, step=0.01,
                    description="edges weaker than this are dropped (unless no stronger edge continues them)"),
              Float("high_threshold", 0.8, min=0.01, max=0.99, step=0.01,
                    description="edges stronger than this are always kept")],
      outputs={"IMAGE": "IMAGE"})
def canny(image: Any, low_threshold: float, high_threshold: float) -> Any:
    """White edge lines on black, found by the Canny detector (as ComfyUI: kornia's, on the image in grey,
    smoothed by a 5×5 Gaussian). Gradient strength is the Sobel magnitude of the 0..1 image, so a sharp
    black-to-white step measures about 2.6 after smoothing; a weak edge is kept where it connects to a
    strong one. Alpha is ignored."""
    from nodes.sd.filters import canny_edges

    return canny_edges(check_image(image), low_threshold, high_threshold)


NODES = [image_blur, image_sharpen, image_quantize, morphology, canny]
