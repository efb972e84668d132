"""Animated image outputs: SaveAnimatedWEBP and SaveAnimatedPNG (ComfyUI's comfy_extras/nodes_images.py).

Each writes the whole batch as one animated file into the run's output folder, named as SaveImage
names its files (``<prefix>_00001_.webp``), carrying the graph as ComfyUI's animated files do.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Boolean, Combo, Float, Int, RunContext, String, node

from .image import graph_chunks
from .values import check_image

WEBP_METHODS = {"default": 4, "fastest": 0, "slowest": 6}


def _prefix() -> Any:
    return String("filename_prefix", "NodeGraph",
                  description="file name start; may hold sub-folders ('clips/fox'), never '..'")


def _fps() -> Any:
    return Float("fps", 6.0, min=0.01, max=1000.0, step=0.01, description="frames per second")


def _save(images: Any, prefix: str, fmt: str, fps: float, ctx: RunContext, **options: Any) -> None:
    from .imageio import save_animation

    graph_json, prompt_json = graph_chunks(ctx)
    path = save_animation(check_image(images, "images"), ctx.options.output_dir, prefix, fmt, fps,
                          graph_json=graph_json, comfy_prompt_json=prompt_json, **options)
    ctx.ui["files"] = [str(path)]
    ctx.ui["images"] = [str(path)]


@node("SaveAnimatedWEBP", display_name="SaveAnimatedWEBP", category="image/animation",
      inputs={"images": "IMAGE"},
      params=[_prefix(), _fps(),
              Boolean("lossless", True, description="exact pixels (larger file); off: lossy at the quality below"),
              Int("quality", 80, min=0, max=100, description="lossy quality, or the effort spent compressing "
                                                            "when lossless"),
              Combo("method", tuple(WEBP_METHODS), description="encoder speed: slowest packs smallest")],
      output_node=True)
def save_animated_webp(images: Any, filename_prefix: str, fps: float, lossless: bool, quality: int, method: str,
                       ctx: RunContext) -> None:
    """Save the batch as one animated WebP, each image a frame shown for 1/fps seconds. The file carries
    this graph (open it with "nodegraph run file.webp"; ComfyUI opens it too)."""
    _save(images, filename_prefix, "WEBP", fps, ctx, lossless=lossless, quality=quality,
          method=WEBP_METHODS[method])


@node("SaveAnimatedPNG", display_name="SaveAnimatedPNG", category="image/animation",
      inputs={"images": "IMAGE"},
      params=[_prefix(), _fps(),
              Int("compress_level", 4, min=0, max=9, description="zlib level: 0 fastest, 9 smallest")],
      output_node=True)
def save_animated_png(images: Any, filename_prefix: str, fps: float, compress_level: int, ctx: RunContext) -> None:
    """Save the batch as one animated PNG (APNG), each image a frame shown for 1/fps seconds, lossless.
    The file carries this graph like Save Image's PNGs."""
    _save(images, filename_prefix, "PNG", fps, ctx, compress_level=compress_level)


NODES = [save_animated_webp, save_animated_png]
