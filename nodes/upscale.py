"""Upscale-model nodes: UpscaleModelLoader and ImageUpscaleWithModel (ComfyUI's names and params).

Models (ESRGAN / Real-ESRGAN, SwinIR, compact SRVGGNet, ... through spandrel) load from the
``upscale_models`` folders, from ``.safetensors`` or weights-only ``.pth`` files.
"""
from __future__ import annotations

from typing import Any

from nodegraph import RunContext, node

from .runtime import load_model, model_fingerprint, model_file, model_param, on_device

TILE = 512
OVERLAP = 32


@node("UpscaleModelLoader", display_name="Load Upscale Model", category="loaders",
      params=[model_param("model_name", "upscale_models", "upscale model (ESRGAN, SwinIR, ...)")],
      outputs={"UPSCALE_MODEL": "UPSCALE_MODEL"},
      fingerprint=model_fingerprint("upscale_models", "model_name"))
def upscale_model_loader(model_name: str, ctx: RunContext) -> Any:
    """Load an image upscale model; its architecture and scale are read from the weights."""
    from nodes.sd.upscale import load_upscale_model

    file = model_file(ctx.options, "upscale_models", model_name)
    model = load_model(ctx, file, load_upscale_model, "upscale_model")
    ctx.ui["model"] = {"file": str(file.path), "architecture": model.name, "scale": model.scale}
    return model


@node("ImageUpscaleWithModel", display_name="Upscale Image (using Model)", category="image/upscaling",
      inputs={"upscale_model": "UPSCALE_MODEL", "image": "IMAGE"}, outputs={"IMAGE": "IMAGE"})
def image_upscale_with_model(upscale_model: Any, image: Any, ctx: RunContext) -> Any:
    """Upscale images with a model, in overlapping 512-pixel tiles (halved and retried if memory runs
    out); reports each tile as progress."""
    from nodes.sd.upscale import upscale_image

    ctx.check_interrupt()
    with on_device(ctx.options, upscale_model.module):
        return upscale_image(upscale_model, image, tile=TILE, overlap=OVERLAP,
                             progress=lambda done, total: ctx.progress(done, total))


NODES = [upscale_model_loader, image_upscale_with_model]
