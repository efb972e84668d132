"""Image filters against OpenCV and Pillow on random images of several sizes and batch shapes: Gaussian blur
and sharpening, morphology, Canny, colour quantisation.

Tolerances: blur and morphology compare float32 results. A blur output is a sum of at most 63×63 products
of a kernel summing to 1 with values in 0..1, computed in two 1-D passes here and by OpenCV in its own
order; each pass's rounding is below 63 float32 ulps of 1 (~4e-6), so 1e-5 bounds the difference.
Sharpening multiplies a blur difference by 10·alpha (≤ 21 here): 2.5e-4. Morphology takes maxima and
minima of the same values: exact.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nodes.image_filters import canny, image_blur, image_quantize, image_sharpen, morphology

cv2 = pytest.importorskip("cv2", reason="OpenCV is the test reference (pip install opencv-python-headless)")

SHAPES = [(1, 17, 23, 3), (2, 40, 31, 3), (3, 9, 12, 4), (1, 5, 7, 1)]


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def per_image(fn, images: np.ndarray) -> np.ndarray:
    """``fn`` on each [H, W, C] image (OpenCV drops a single channel's axis; it is put back)."""
    out = np.stack([fn(np.ascontiguousarray(im)) for im in images])
    return out.reshape(images.shape)


def cv_blur(images: np.ndarray, radius: int, sigma: float) -> np.ndarray:
    """ComfyUI's kernel spans linspace(-1, 1, 2r+1): its sigma is in radii, i.e. sigma·r pixels. Its reflect
    padding repeats no edge pixel: OpenCV's BORDER_REFLECT_101."""
    size = 2 * radius + 1
    return per_image(lambda im: cv2.GaussianBlur(im, (size, size), sigmaX=sigma * radius, sigmaY=sigma * radius,
                                                 borderType=cv2.BORDER_REFLECT_101), images)


# -- blur and sharpen --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("radius,sigma", [(1, 1.0), (4, 0.5), (10, 2.0), (31, 10.0), (31, 0.1)])
def test_image_blur_is_opencv_gaussian_blur_with_reflect_101(shape, radius, sigma):
    images = rand(*shape, seed=radius)
    out = image_blur(image=images, blur_radius=radius, sigma=sigma)
    np.testing.assert_allclose(out.numpy(), cv_blur(images.numpy(), radius, sigma), atol=1e-5)


def test_image_blur_equals_comfyuis_two_dimensional_kernel():
    """ComfyUI convolves once with exp(−(x²+y²)/2σ²) over a meshgrid of linspace(−1, 1, 2r+1), normalised;
    the two 1-D passes here factor that kernel exactly."""
    radius, sigma = 3, 0.7
    x = np.linspace(-1, 1, 2 * radius + 1)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    kernel = np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
    kernel /= kernel.sum()
    image = rand(1, 12, 14, 3, seed=5)
    padded = np.pad(image.numpy()[0], ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    direct = np.zeros((12, 14, 3))
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            direct += kernel[dy, dx] * padded[dy:dy + 12, dx:dx + 14]
    out = image_blur(image=image, blur_radius=radius, sigma=sigma)
    np.testing.assert_allclose(out[0].numpy(), direct, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("radius,sigma,alpha", [(1, 1.0, 1.0), (3, 0.5, 2.0), (31, 3.0, 0.3), (2, 1.0, 0.0)])
def test_image_sharpen_is_unsharp_masking_with_the_same_gaussian(shape, radius, sigma, alpha):
    images = rand(*shape, seed=radius)
    expected = np.clip((1 + 10 * alpha) * images.numpy() - 10 * alpha * cv_blur(images.numpy(), radius, sigma), 0, 1)
    out = image_sharpen(image=images, sharpen_radius=radius, sigma=sigma, alpha=alpha)
    np.testing.assert_allclose(out.numpy(), expected, atol=2.5e-4)


# -- morphology ------------------------------------------------------------------------------------------------
def cv_erode(images, k):
    return per_image(lambda im: cv2.erode(im, np.ones((k, k), np.uint8)), images)


def cv_dilate(images, k):
    """Dilation by the reflected square: for an even side OpenCV's anchor moves to k−1−k//2."""
    anchor = (k - 1 - k // 2,) * 2
    return per_image(lambda im: cv2.dilate(im, np.ones((k, k), np.uint8), anchor=anchor), images)


MORPHOLOGY = {
    "erode": cv_erode,
    "dilate": cv_dilate,
    "open": lambda x, k: cv_dilate(cv_erode(x, k), k),
    "close": lambda x, k: cv_erode(cv_dilate(x, k), k),
    "gradient": lambda x, k: cv_dilate(x, k) - cv_erode(x, k),
    "top_hat": lambda x, k: x - cv_dilate(cv_erode(x, k), k),
    "bottom_hat": lambda x, k: cv_erode(cv_dilate(x, k), k) - x,
}


@pytest.mark.parametrize("operation", list(MORPHOLOGY))
@pytest.mark.parametrize("shape,k", [((2, 13, 17, 3), 3), ((1, 20, 9, 4), 4), ((3, 11, 11, 1), 7), ((1, 6, 8, 3), 25)])
def test_morphology_matches_opencv(operation, shape, k):
    images = rand(*shape, seed=k)
    out = morphology(image=images, operation=operation, kernel_size=k)
    np.testing.assert_array_equal(out.numpy(), MORPHOLOGY[operation](images.numpy(), k))


@pytest.mark.parametrize("operation,cv_op", [("open", cv2.MORPH_OPEN), ("close", cv2.MORPH_CLOSE),
                                             ("gradient", cv2.MORPH_GRADIENT), ("top_hat", cv2.MORPH_TOPHAT),
                                             ("bottom_hat", cv2.MORPH_BLACKHAT)])
def test_morphology_with_an_odd_kernel_is_opencvs_morphology_ex(operation, cv_op):
    images = rand(2, 15, 19, 3, seed=9)
    expected = per_image(lambda im: cv2.morphologyEx(im, cv_op, np.ones((5, 5), np.uint8)), images.numpy())
    np.testing.assert_array_equal(morphology(image=images, operation=operation, kernel_size=5).numpy(), expected)


def test_morphology_keeps_the_image_size_for_even_kernels():
    assert morphology(image=rand(1, 10, 12, 3), operation="dilate", kernel_size=6).shape == (1, 10, 12, 3)


# -- Canny --------------------------------------------------------------------------------------------------
def opencv_canny(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """OpenCV's Canny on the same gradients: grey (BT.601 weights, as kornia), 5×5 Gaussian σ = 1 mirrored at
    the borders, unnormalised 3×3 Sobel with replicated borders, L2 magnitude. cv2.Canny takes int16
    derivatives, so they and the thresholds are scaled by the largest power of 2 that keeps |dx|·scale below
    26000: its sector test computes |dx|·(2¹⁶ + 13573) in int32 (2¹⁴ for the random images, whose
    gradients stay below 1.6; 2¹³ for drawn shapes, up to 2.6)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    blurred = cv2.GaussianBlur(grey, (5, 5), 1, borderType=cv2.BORDER_REFLECT_101)
    dx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    dy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    scale = 2.0 ** np.floor(np.log2(26000 / max(np.abs(dx).max(), np.abs(dy).max())))
    as_int = [np.round(d * scale).astype(np.int16) for d in (dx, dy)]
    return cv2.Canny(*as_int, low * scale, high * scale, L2gradient=True) > 0


def smooth_image(seed: int, height: int, width: int) -> np.ndarray:
    """Random colour blobs (a coarse random grid upsampled bicubically) with a little noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 6 + 2, width // 6 + 2, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(image + 0.02 * rng.standard_normal(image.shape).astype(np.float32), 0, 1)


@pytest.mark.parametrize("seed,height,width", [(0, 53, 55), (1, 56, 23), (2, 84, 42), (3, 64, 64), (5, 33, 77)])
@pytest.mark.parametrize("low,high", [(0.1, 0.2), (0.4, 0.8), (0.05, 0.6)])
def test_canny_matches_opencv_on_random_images(seed, height, width, low, high):
    """The thresholds are in units of kornia's gradient: the unnormalised Sobel magnitude of the blurred
    0..1 grey image (OpenCV's thresholds on a 0..255 image would be 255× these). Non-maximum suppression
    and hysteresis follow the same rules (45° sectors, ties kept on the left/upper side, strict
    thresholds, 8-connected hysteresis). What can differ: a decision within OpenCV's int16 rounding of
    the gradient (2⁻¹⁴ here) of a tie or threshold, and — through hysteresis — the weak chain hanging on such a
    pixel. On these images the maps are identical; over 180 random images 169 were, the rest differing in
    at most 0.8% of their edge pixels, hence the 2% bound."""
    image = smooth_image(seed, height, width)
    ours = canny(image=torch.from_numpy(image)[None], low_threshold=low, high_threshold=high)
    assert ours.shape == (1, height, width, 3) and set(np.unique(ours.numpy())) <= {0.0, 1.0}
    edges, reference = ours[0, ..., 0].numpy() > 0.5, opencv_canny(image, low, high)
    assert reference.sum() > 50  # the images have edges to find
    assert (edges != reference).sum() <= 0.02 * reference.sum()


def within_one_pixel(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether every True pixel of ``a`` has a True pixel of ``b`` in its 3×3 neighbourhood."""
    grown = cv2.dilate(b.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return bool((grown | ~a).all())


@pytest.mark.parametrize("low,high", [(0.4, 0.8), (0.1, 0.3)])
def test_canny_edges_of_drawn_shapes_are_opencvs_up_to_plateau_ties(low, high):
    """A sharp axis-aligned step gives two neighbouring pixels the same gradient magnitude. OpenCV's integer
    gradients tie exactly and it keeps the left/upper pixel; in float the blur's rounding makes one of the
    two larger by an ulp and kornia keeps that one. The edge line is then one pixel over: as many edge
    pixels, each within one pixel of the other map's."""
    image = np.zeros((48, 56, 3), np.uint8)
    cv2.rectangle(image, (5, 6), (24, 20), (0, 200, 255), -1)
    cv2.circle(image, (36, 30), 13, (255, 60, 0), -1)
    cv2.line(image, (2, 45), (50, 3), (90, 255, 90), 2)
    image = image.astype(np.float32) / 255
    ours = canny(image=torch.from_numpy(image)[None], low_threshold=low, high_threshold=high)[0, ..., 0].numpy() > 0.5
    reference = opencv_canny(image, low, high)
    assert ours.sum() == reference.sum() > 200
    assert within_one_pixel(ours, reference) and within_one_pixel(reference, ours)


def test_canny_low_threshold_above_high_is_refused():
    with pytest.raises(ValueError, match="low_threshold 0.8 is above high_threshold 0.4"):
        canny(image=rand(1, 8, 8, 3), low_threshold=0.8, high_threshold=0.4)


# -- quantisation ---------------------------------------------------------------------------------------------
def as_bytes(image: torch.Tensor) -> np.ndarray:
    """How ComfyUI reads a float image into Pillow: ×255 and truncated."""
    return (image.clamp(0, 1).numpy() * 255).astype(np.uint8)


def bayer_index(order: int) -> np.ndarray:
    """The classic recursive Bayer index matrix: B₂ₙ = [[4B, 4B+2], [4B+3, 4B+1]], B₁ = [[0]]."""
    b = np.zeros((1, 1))
    while b.shape[0] < order:
        b = np.block([[4 * b, 4 * b + 2], [4 * b + 3, 4 * b + 1]])
    return b


@pytest.mark.parametrize("dither", ["none", "floyd-steinberg"])
@pytest.mark.parametrize("colors", [2, 16, 256])
def test_image_quantize_is_pillows_median_cut_palette(dither, colors):
    images = rand(2, 12, 10, 3, seed=colors)
    out = image_quantize(image=images, colors=colors, dither=dither)
    method = Image.Dither.NONE if dither == "none" else Image.Dither.FLOYDSTEINBERG
    for b in range(2):
        picture = Image.fromarray(as_bytes(images[b]), "RGB")
        expected = picture.quantize(palette=picture.quantize(colors=colors), dither=method).convert("RGB")
        np.testing.assert_array_equal((out[b].numpy() * 255).round().astype(np.uint8), np.asarray(expected))
        assert len(np.unique(out[b].reshape(-1, 3).numpy(), axis=0)) <= colors


@pytest.mark.parametrize("order", [2, 4, 8, 16])
def test_image_quantize_bayer_adds_the_ordered_threshold_map_before_mapping(order):
    """Each pixel is offset by spread·((B + ½)/n² − ½) + ½ (B the Bayer index at its position, spread = 512 /
    palette size) before taking the nearest palette colour, without further dithering."""
    images = rand(1, 19, 21, 3, seed=order)
    out = image_quantize(image=images, colors=8, dither=f"bayer-{order}")
    pixels = as_bytes(images[0])
    palette = Image.fromarray(pixels, "RGB").quantize(colors=8)
    spread = 512 / (len(palette.getpalette()) // 3)
    offset = spread * ((bayer_index(order) + 0.5) / order ** 2 - 0.5) + 0.5
    tiled = np.tile(offset, (-(-19 // order), -(-21 // order)))[:19, :21, None]
    shifted = np.clip((pixels.astype(np.float64) + tiled).astype(np.float32), 0, 255).astype(np.uint8)
    expected = Image.fromarray(shifted, "RGB").quantize(palette=palette, dither=Image.Dither.NONE).convert("RGB")
    np.testing.assert_array_equal((out[0].numpy() * 255).round().astype(np.uint8), np.asarray(expected))


def test_image_quantize_passes_alpha_through():
    images = rand(1, 6, 6, 4)
    out = image_quantize(image=images, colors=4, dither="none")
    torch.testing.assert_close(out[..., 3], images[..., 3], rtol=0, atol=0)
