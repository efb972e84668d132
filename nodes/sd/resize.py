"""Resampling for the LatentUpscale / LatentUpscaleBy / ImageScale / ImageScaleBy nodes.

Same methods and semantics as ComfyUI's ``comfy.utils.common_upscale``:

- ``nearest-exact``, ``bilinear``, ``area``, ``bicubic``: ``torch.nn.functional.interpolate`` with
  that mode (``align_corners`` False, no antialiasing);
- ``bislerp``: bilinear interpolation in which each pair of neighbouring channel vectors is blended
  by spherical interpolation of their directions and linear interpolation of their lengths (meant
  for latents, whose vector length carries the noise level);
- ``lanczos``: Pillow's Lanczos filter, image by image, through 8-bit pixels (so values are clipped
  to 0..1 and quantised to 1/255, as in ComfyUI);
- ``crop="center"`` first cuts the input to the target aspect ratio, keeping the middle.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp", "lanczos")
LATENT_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp")
IMAGE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
CROPS = ("disabled", "center")


def common_upscale(samples: torch.Tensor, width: int, height: int, method: str, crop: str = "disabled") -> torch.Tensor:
    """Resize ``samples [B,C,H,W]`` to ``[B,C,height,width]`` with ``method`` (one of ``METHODS``),
    after an optional center crop to the target aspect ratio (``crop``: ``"disabled"`` or ``"center"``)."""
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        got = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise ValueError(f"samples must be a tensor [B,C,H,W]; got {got}.")
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}.")
    if method not in METHODS:
        raise ValueError(f"upscale_method {method!r} is not one of {', '.join(METHODS)}.")
    if crop not in CROPS:
        raise ValueError(f"crop {crop!r} is not one of {', '.join(CROPS)}.")
    if samples.shape[2] == 0 or samples.shape[3] == 0:
        raise ValueError(f"samples have no pixels (shape {tuple(samples.shape)}).")

    if crop == "center":
        samples = center_crop_to_aspect(samples, width, height)
    if method == "bislerp":
        return bislerp(samples, width, height)
    if method == "lanczos":
        return lanczos(samples, width, height)
    return F.interpolate(samples, size=(height, width), mode=method)


def center_crop_to_aspect(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Cut ``samples`` to the aspect ratio ``width:height``, keeping the middle (ComfyUI's rounding)."""
    old_h, old_w = samples.shape[-2], samples.shape[-1]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return samples.narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)


# -- bislerp --------------------------------------------------------------------------------------
def slerp_vectors(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Blend rows of ``a`` and ``b`` ``[N,C]`` at ratios ``t [N,1]``: the direction moves along the great
    circle from ``a``'s to ``b``'s, the length goes linearly from ``|a|`` to ``|b|``.

    Nearly parallel rows give ``a`` unchanged; nearly opposite rows are blended linearly; a zero row
    has no direction (it counts as the zero vector in the direction blend).
    """
    norm_a = a.norm(dim=-1, keepdim=True)
    norm_b = b.norm(dim=-1, keepdim=True)
    unit_a = torch.where(norm_a == 0, torch.zeros_like(a), a / norm_a)
    unit_b = torch.where(norm_b == 0, torch.zeros_like(b), b / norm_b)
    cos = (unit_a * unit_b).sum(dim=-1, keepdim=True)
    omega = torch.acos(cos)
    sin_omega = torch.sin(omega)
    direction = (torch.sin((1.0 - t) * omega) * unit_a + torch.sin(t * omega) * unit_b) / sin_omega
    out = direction * ((1.0 - t) * norm_a + t * norm_b)
    out = torch.where(cos < -1 + 1e-5, (1.0 - t) * a + t * b, out)
    return torch.where(cos > 1 - 1e-5, a, out)


def _neighbours(old: int, new: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of ``new`` output positions: the two source indices to blend and the ratio between them,
    on the same sampling grid as bilinear interpolation without corner alignment."""
    def resample(values: torch.Tensor) -> torch.Tensor:
        return F.interpolate(values.reshape(1, 1, 1, -1), size=(1, new), mode="bilinear").reshape(-1)

    index = torch.arange(old, dtype=torch.float32, device=device)
    pos = resample(index)  # fractional source coordinate of each output position
    upper = index + 1
    upper[-1] -= 1
    return pos.to(torch.int64), resample(upper).to(torch.int64), pos - pos.floor()


def _bislerp_along_last(x: torch.Tensor, new: int) -> torch.Tensor:
    """Resize the last dimension of ``x [B,C,H,W]`` to ``new`` with slerp between neighbours."""
    b, c, h, _ = x.shape
    lo, hi, ratio = _neighbours(x.shape[-1], new, x.device)
    a = x.index_select(-1, lo).movedim(1, -1).reshape(-1, c)
    z = x.index_select(-1, hi).movedim(1, -1).reshape(-1, c)
    t = ratio.reshape(1, 1, new).expand(b, h, new).reshape(-1, 1)
    return slerp_vectors(a, z, t).reshape(b, h, new, c).movedim(-1, 1)


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize ``samples [B,C,H,W]`` with slerp between neighbouring channel vectors: along the width first,
    then along the height (computed in float32, returned in the input's dtype)."""
    x = samples.float()
    x = _bislerp_along_last(x, width)
    x = _bislerp_along_last(x.transpose(-1, -2), height).transpose(-1, -2)
    return x.contiguous().to(samples.dtype)


# -- lanczos --------------------------------------------------------------------------------------


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize ``samples [B,C,H,W]`` (values in 0..1) with Pillow's Lanczos filter, one image at a time.

    1–4 channels go through Pillow as L / LA / RGB / RGBA images (as ComfyUI does; Pillow premultiplies
    alpha when it resizes LA and RGBA); other channel counts are resized one channel at a time.
    """
    import numpy as np
    from PIL import Image

    pixels = (samples.detach().to("cpu", torch.float32).clamp(0, 1).numpy() * 255.0).astype(np.uint8)
    channels = pixels.shape[1]
    out = []
    for image in pixels:
        if channels <= 4:  # Pillow reads [H,W] as L, [H,W,2|3|4] as LA / RGB / RGBA
            hwc = image[0] if channels == 1 else np.moveaxis(image, 0, -1)
            pil = Image.fromarray(np.ascontiguousarray(hwc))
            arr = np.asarray(pil.resize((width, height), resample=Image.Resampling.LANCZOS))
            out.append(arr[None] if channels == 1 else np.moveaxis(arr, -1, 0))
        else:
            out.append(np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(ch))
                                            .resize((width, height), resample=Image.Resampling.LANCZOS))
                                 for ch in image]))
    result = torch.from_numpy(np.stack(out).astype(np.float32) / 255.0)
    return result.to(samples.device, samples.dtype)


# -- node semantics -------------------------------------------------------------------------------
def _size_keeping_aspect(old_w: int, old_h: int, width: int, height: int, minimum: int) -> tuple[int, int]:
    """ComfyUI's rule: a 0 width or height follows the other through the input's aspect ratio."""
    if width == 0:
        height = max(minimum, height)
        width = max(minimum, round(old_w * height / old_h))
    elif height == 0:
        width = max(minimum, width)
        height = max(minimum, round(old_h * width / old_w))
    else:
        width, height = max(minimum, width), max(minimum, height)
    return width, height


def scale_image(image: torch.Tensor, method: str, width: int, height: int, crop: str = "disabled") -> torch.Tensor:
    """The ImageScale node: resize an IMAGE ``[B,H,W,C]`` to ``width``×``height`` pixels; a 0 side keeps
    the aspect ratio, both 0 returns the image unchanged."""
    _check_image(image)
    if width == 0 and height == 0:
        return image
    samples = image.movedim(-1, 1)
    w, h = _size_keeping_aspect(samples.shape[3], samples.shape[2], width, height, minimum=1)
    return common_upscale(samples, w, h, method, crop).movedim(1, -1)


def scale_image_by(image: torch.Tensor, method: str, scale_by: float) -> torch.Tensor:
    """The ImageScaleBy node: resize an IMAGE ``[B,H,W,C]`` by a factor (sides rounded, at least 1)."""
    _check_image(image)
    samples = image.movedim(-1, 1)
    w = max(1, round(samples.shape[3] * scale_by))
    h = max(1, round(samples.shape[2] * scale_by))
    return common_upscale(samples, w, h, method, "disabled").movedim(1, -1)


def scale_latent(samples: torch.Tensor, method: str, width: int, height: int, crop: str = "disabled") -> torch.Tensor:
    """The LatentUpscale node: ``width``/``height`` are in pixels (at least 64, divided by 8 for the latent);
    a 0 side keeps the aspect ratio, both 0 returns ``samples`` unchanged."""
    if width == 0 and height == 0:
        return samples
    w, h = _size_keeping_aspect(samples.shape[3], samples.shape[2], width, height, minimum=64)
    return common_upscale(samples, w // 8, h // 8, method, crop)


def scale_latent_by(samples: torch.Tensor, method: str, scale_by: float) -> torch.Tensor:
    """The LatentUpscaleBy node: resize latent ``samples [B,C,h,w]`` by a factor (sides rounded, at least 1)."""
    w = max(1, round(samples.shape[3] * scale_by))
    h = max(1, round(samples.shape[2] * scale_by))
    return common_upscale(samples, w, h, method, "disabled")


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be an IMAGE tensor [B,H,W,C]; got {got}.")
