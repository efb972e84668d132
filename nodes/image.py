"""Image nodes: VAEDecode, VAEEncode, VAEDecodeTiled, VAEEncodeTiled, ImageScale, ImageScaleBy,
ImageScaleToTotalPixels, LoadImage, SaveImage, PreviewImage.

IMAGE values are float tensors ``[B, H, W, C]`` in 0..1 (C = 3, or 4 with alpha), MASK values
``[B, H, W]`` in 0..1, as in ComfyUI.

**Input images** (LoadImage's ``image``): a name listed from the input folders, searched in order —

1. the folders in ``NODEGRAPH_INPUT`` (``os.pathsep``-separated);
2. ``input/`` in the current working directory (ComfyUI's ``input`` folder);
3. the user data folder's ``input/`` (skipped under ``NODEGRAPH_TESTING=1``);
4. ``examples/input/`` next to the app (the example graphs' images);

or any other path to an image file, absolute or relative to the current working directory.

**Outputs**: SaveImage writes ``<filename_prefix>_<counter>_.png`` into the run's output folder
(``--out``), never overwriting and never leaving that folder; each PNG carries the graph (a
``nodegraph`` text chunk, which ``nodegraph run image.png`` and the API reopen) and ComfyUI's
``prompt`` chunk. PreviewImage writes the same kind of PNG into a temporary folder.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from nodegraph import Combo, Float, Int, RunContext, String, node
from nodegraph.errors import InputError

from .folders import APP_MODELS_DIR, ENV_TESTING
from .latent import check_latent
from .runtime import on_device

MAX_RESOLUTION = 16384
IMAGE_UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
CROP_METHODS = ("disabled", "center")
ENV_INPUT = "NODEGRAPH_INPUT"
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
EXAMPLES_INPUT_DIR = APP_MODELS_DIR.parent / "examples" / "input"


# -- VAE ------------------------------------------------------------------------------------------
def _check_image(image: Any, name: str = "image") -> Any:
    import torch

    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"{name} must be an IMAGE tensor [batch, height, width, channels], got {got}")
    if image.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (0 images)")
    return image


def _rgb_pixels(pixels: Any) -> Any:
    """VAE input: RGB only (alpha dropped, grey repeated), cropped to multiples of 8 around the middle
    (ComfyUI's VAEEncode crop)."""
    pixels = _check_image(pixels, "pixels")
    channels = pixels.shape[-1]
    if channels == 1:
        pixels = pixels.expand(-1, -1, -1, 3)
    elif channels not in (3, 4):
        raise InputError(f"pixels have {channels} channels; the VAE encodes RGB images (3 channels, or 4 "
                         "with alpha, which is ignored). Convert the image to RGB first")
    h, w = pixels.shape[1] // 8 * 8, pixels.shape[2] // 8 * 8
    if h == 0 or w == 0:
        raise InputError(f"pixels are {pixels.shape[2]}×{pixels.shape[1]}; the VAE needs at least 8×8")
    if (h, w) != tuple(pixels.shape[1:3]):
        y, x = (pixels.shape[1] % 8) // 2, (pixels.shape[2] % 8) // 2
        pixels = pixels[:, y:y + h, x:x + w]
    return pixels[..., :3]


def _decode(vae: Any, latents: Any, options: Any) -> Any:
    from nodes.sd.upscale import is_out_of_memory

    with on_device(options, vae.model):
        try:
            return vae.decode(latents)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        # ComfyUI's fallback: tiles normalised one at a time, memory bounded by the tile (the exact,
        # shared-statistics tiling would keep every tile's activations: no saving).
        return vae.decode_tiled(latents, shared_norms=False)


@node("VAEDecode", display_name="VAE Decode", category="latent",
      inputs={"samples": "LATENT", "vae": "VAE"}, outputs={"IMAGE": "IMAGE"})
def vae_decode(samples: dict, vae: Any, ctx: RunContext) -> Any:
    """Latents to images with the VAE (falls back to tiled decoding when memory runs out)."""
    return _decode(vae, check_latent(samples), ctx.options)


@node("VAEDecodeTiled", display_name="VAE Decode (Tiled)", category="latent",
      inputs={"samples": "LATENT", "vae": "VAE"},
      params=[Int("tile_size", 512, min=64, max=4096, step=32, description="tile side in image pixels"),
              Int("overlap", 64, min=0, max=4096, step=32, description="overlap of neighbouring tiles in pixels")],
      outputs={"IMAGE": "IMAGE"})
def vae_decode_tiled(samples: dict, vae: Any, tile_size: int, overlap: int, ctx: RunContext) -> Any:
    """Latents to images in overlapping tiles: large images in little memory.

    As ComfyUI's: each tile is decoded on its own (its own group-norm statistics), so memory is
    bounded by the tile size; neighbouring tiles are blended across the overlap, and a small
    overlap can leave faint seams. (``VAE.decode_tiled`` with shared statistics is exact but keeps
    every tile's activations, so it saves no memory; VAEDecode uses no tiles unless memory runs out.)
    """
    if tile_size < overlap * 4:
        overlap = tile_size // 4
    with on_device(ctx.options, vae.model):
        return vae.decode_tiled(check_latent(samples), tile=max(1, tile_size // 8), overlap=overlap // 8,
                                shared_norms=False)


@node("VAEEncode", display_name="VAE Encode", category="latent",
      inputs={"pixels": "IMAGE", "vae": "VAE"}, outputs={"LATENT": "LATENT"})
def vae_encode(pixels: Any, vae: Any, ctx: RunContext) -> dict:
    """Images to latents with the VAE (the start of image-to-image). Sides that are not multiples of 8
    are cropped to the nearest smaller multiple, keeping the middle."""
    pixels = _rgb_pixels(pixels)
    with on_device(ctx.options, vae.model):
        return {"samples": vae.encode(pixels)}


@node("VAEEncodeTiled", display_name="VAE Encode (Tiled)", category="latent",
      inputs={"pixels": "IMAGE", "vae": "VAE"},
      params=[Int("tile_size", 512, min=64, max=4096, step=64, description="tile side in image pixels"),
              Int("overlap", 64, min=0, max=4096, step=32, description="overlap of neighbouring tiles in pixels")],
      outputs={"LATENT": "LATENT"})
def vae_encode_tiled(pixels: Any, vae: Any, tile_size: int, overlap: int, ctx: RunContext) -> dict:
    """Images to latents in overlapping tiles: large images in little memory (each tile on its own,
    as VAEDecodeTiled)."""
    pixels = _rgb_pixels(pixels)
    tile = max(8, tile_size // 8 * 8)
    overlap = min(overlap, tile // 4) // 8 * 8
    with on_device(ctx.options, vae.model):
        return {"samples": vae.encode_tiled(pixels, tile=tile, overlap=overlap, shared_norms=False)}


# -- resizing ---------------------------------------------------------------------------------------
@node("ImageScale", display_name="Upscale Image", category="image/upscaling",
      inputs={"image": "IMAGE"},
      params=[Combo("upscale_method", IMAGE_UPSCALE_METHODS),
              Int("width", 512, min=0, max=MAX_RESOLUTION, step=1,
                  description="target width; 0 keeps the aspect ratio from height"),
              Int("height", 512, min=0, max=MAX_RESOLUTION, step=1,
                  description="target height; 0 keeps the aspect ratio from width"),
              Combo("crop", CROP_METHODS)],
      outputs={"IMAGE": "IMAGE"})
def image_scale(image: Any, upscale_method: str, width: int, height: int, crop: str) -> Any:
    """Resize images to ``width``×``height`` pixels (``crop`` center first cuts them to that aspect ratio)."""
    from nodes.sd.resize import scale_image

    return scale_image(_check_image(image), upscale_method, width, height, crop)


@node("ImageScaleBy", display_name="Upscale Image By", category="image/upscaling",
      inputs={"image": "IMAGE"},
      params=[Combo("upscale_method", IMAGE_UPSCALE_METHODS),
              Float("scale_by", 1.0, min=0.01, max=8.0, step=0.01)],
      outputs={"IMAGE": "IMAGE"})
def image_scale_by(image: Any, upscale_method: str, scale_by: float) -> Any:
    """Resize images by a factor."""
    from nodes.sd.resize import scale_image_by

    return scale_image_by(_check_image(image), upscale_method, scale_by)


@node("ImageScaleToTotalPixels", display_name="Scale Image to Total Pixels", category="image/upscaling",
      inputs={"image": "IMAGE"},
      params=[Combo("upscale_method", IMAGE_UPSCALE_METHODS),
              Float("megapixels", 1.0, min=0.01, max=16.0, step=0.01,
                    description="target size in megapixels (1 MP = 1024×1024 pixels)"),
              Int("resolution_steps", 1, min=1, max=256,
                  description="round width and height to multiples of this")],
      outputs={"IMAGE": "IMAGE"})
def image_scale_to_total_pixels(image: Any, upscale_method: str, megapixels: float,
                                resolution_steps: int) -> Any:
    """Resize images to about ``megapixels`` keeping their aspect ratio (ComfyUI's rounding)."""
    import math

    from nodes.sd.resize import common_upscale

    samples = _check_image(image).movedim(-1, 1)
    scale = math.sqrt(megapixels * 1024 * 1024 / (samples.shape[3] * samples.shape[2]))
    width = max(1, round(samples.shape[3] * scale / resolution_steps) * resolution_steps)
    height = max(1, round(samples.shape[2] * scale / resolution_steps) * resolution_steps)
    return common_upscale(samples, width, height, upscale_method, "disabled").movedim(1, -1)


# -- input images -------------------------------------------------------------------------------------
def input_folders() -> list[Path]:
    """LoadImage's input folders, in search order (see the module docstring)."""
    folders = [Path(p).expanduser() for p in os.environ.get(ENV_INPUT, "").split(os.pathsep) if p.strip()]
    folders.append(Path.cwd() / "input")
    if os.environ.get(ENV_TESTING, "") not in ("1", "true", "yes"):
        import platformdirs

        folders.append(Path(platformdirs.user_data_dir("NodeGraph", appauthor=False)) / "input")
    folders.append(EXAMPLES_INPUT_DIR)
    return folders


def list_input_images() -> list[str]:
    """Names (``/``-separated, relative to their input folder) of the images in the input folders."""
    names: set[str] = set()
    for folder in input_folders():
        if not folder.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, folder)
            for name in filenames:
                if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                    names.add(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return sorted(names)


def resolve_image(name: str) -> Path:
    """The file LoadImage reads for ``name``: the first input folder holding it, else ``name`` as a
    path (absolute, or relative to the working directory). Raises ImageLoadError listing the folders."""
    from .imageio import ImageLoadError

    if not isinstance(name, str) or not name.strip():
        raise ImageLoadError("no image chosen: pick a file from the input folders or give a path")
    relative = not os.path.isabs(name) and ".." not in Path(name).parts
    if relative:
        for folder in input_folders():
            candidate = folder / name
            if candidate.is_file():
                return candidate
    path = Path(name).expanduser()
    if path.is_file():
        return path
    folders = "\n".join(f"  {f}" + ("" if f.is_dir() else "  (does not exist)") for f in input_folders())
    raise ImageLoadError(f"image {name!r} was not found. Input folders searched, in order:\n{folders}\n"
                         f"Put the image in one of them, or give its full path.")


def _image_unlisted(value: Any, options: Any) -> str | None:
    try:
        resolve_image(value)
    except Exception as exc:
        return str(exc)
    return None


def input_image_fingerprint(params: dict[str, Any]) -> str:
    """Fingerprint of a node reading the input image named by its ``image`` param: the file's hash."""
    from .imageio import image_fingerprint

    return image_fingerprint(resolve_image(params["image"]))


def input_image_param() -> Any:
    """The ``image`` param of LoadImage and LoadImageMask: a file in the input folders, or a path."""
    return Combo("image", lambda: list_input_images(), "", check_unlisted=_image_unlisted,
                 description="an image in the input folders, or a path to one")


@node("LoadImage", display_name="Load Image", category="image",
      params=[input_image_param()],
      outputs={"IMAGE": "IMAGE", "MASK": "MASK"}, fingerprint=input_image_fingerprint)
def load_image(image: str) -> tuple[Any, Any]:
    """Read an image file (PNG, JPEG, WebP, ...): its pixels, and a mask from its alpha channel
    (1 where transparent). EXIF rotation is applied; all frames of the first frame's size form the
    batch; images larger than the decompression-bomb limit are refused. An edited file re-runs."""
    from .imageio import load_image as read

    return read(resolve_image(image))


# -- output images ----------------------------------------------------------------------------------
def graph_chunks(ctx: RunContext) -> tuple[str | None, str | None]:
    """The ``nodegraph`` chunk (the graph file) and ComfyUI's ``prompt`` chunk for the running graph."""
    if ctx.graph is None:
        return None, None
    import json

    from nodegraph.comfy.api_format import to_api_prompt
    from nodegraph.format import dumps

    from . import builtin_specs

    prompt = to_api_prompt(ctx.graph, builtin_specs())
    return dumps(ctx.graph), json.dumps(prompt) if prompt else None


def _save(images: Any, folder: Path, prefix: str, ctx: RunContext, compress_level: int) -> list[Path]:
    from .imageio import save_images

    graph_json, prompt_json = graph_chunks(ctx)
    return save_images(_check_image(images, "images"), folder, prefix, graph_json=graph_json,
                       comfy_prompt_json=prompt_json, compress_level=compress_level)


@node("SaveImage", display_name="Save Image", category="image", inputs={"images": "IMAGE"},
      params=[String("filename_prefix", "NodeGraph",
                     description="file name start; may hold sub-folders ('portraits/fox'), never '..'. "
                                 "%width%, %height%, %year%, %month%, %day%, ... are replaced")],
      output_node=True)
def save_image(images: Any, filename_prefix: str, ctx: RunContext) -> None:
    """Save images as PNG files ``<prefix>_00001_.png``, ... in the output folder, each carrying this
    graph (open it with ``nodegraph run file.png`` or in the editor; ComfyUI opens it too)."""
    paths = _save(images, ctx.options.output_dir, filename_prefix, ctx, compress_level=4)
    ctx.ui["files"] = [str(p) for p in paths]
    ctx.ui["images"] = [str(p) for p in paths]


_preview_dir: Path | None = None
_preview_lock = threading.Lock()


def preview_folder() -> Path:
    """The temporary folder PreviewImage writes to (removed when the process exits)."""
    global _preview_dir
    with _preview_lock:
        if _preview_dir is None or not _preview_dir.is_dir():
            _preview_dir = Path(tempfile.mkdtemp(prefix="nodegraph-preview-"))
            atexit.register(shutil.rmtree, _preview_dir, ignore_errors=True)
        return _preview_dir


@node("PreviewImage", display_name="Preview Image", category="image", inputs={"images": "IMAGE"},
      output_node=True)
def preview_image(images: Any, ctx: RunContext) -> None:
    """Show images without keeping them: they go to a temporary folder that is removed on exit."""
    paths = _save(images, preview_folder(), "preview", ctx, compress_level=1)
    ctx.ui["images"] = [str(p) for p in paths]


NODES = [vae_decode, vae_encode, vae_decode_tiled, vae_encode_tiled, image_scale, image_scale_by,
         image_scale_to_total_pixels, load_image, save_image, preview_image]
