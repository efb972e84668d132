"""Helpers of the ComfyUI interop tests (imported as ``comfykit``): where the templates and fixtures
are, the model file names the templates ask for, graph comparisons."""
from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

from nodegraph import Graph

FIXTURES = Path(__file__).parent / "fixtures"

CHECKPOINTS = {
    "v1-5-pruned-emaonly-fp16.safetensors": "sd1",
    "DreamShaper_8_pruned.safetensors": "sd1",
    "sd_xl_base_1.0.safetensors": "sdxl",
    "sd_xl_refiner_1.0.safetensors": "sdxl_refiner",
    "dreamshaper_8.safetensors": "sd1",  # the LoRA templates' checkpoint
}
INPAINT_CHECKPOINTS = {"512-inpainting-ema.safetensors": "sd2"}  # written with a 9-channel (inpainting) U-Net
LORAS = ("blindbox_v1_mix.safetensors", "MoXinV1.safetensors")  # the LoRA templates' LoRAs
ESRGAN_4X = "RealESRGAN_x4plus.safetensors"
VAE = "vae-ft-mse-840000-ema-pruned.safetensors"  # the area composition templates' VAE
INPUT_IMAGE = "image2image_input_image.jpg"
MASKED_INPUT_IMAGES = ("inpaint_example_input_image.png", "inpaint_model_outpainting_input_image.png")
"""The inpainting templates' images: PNGs whose alpha is 0 (a hole: Load Image's MASK 1) in a square."""


def templates_dir() -> Path:
    """The templates folder inside the installed ``comfyui_workflow_templates`` package."""
    return Path(str(importlib.resources.files("comfyui_workflow_templates") / "templates"))


def template(name: str) -> dict[str, Any]:
    return json.loads((templates_dir() / f"{name}.json").read_text(encoding="utf-8"))


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def shape(graph: Graph) -> tuple[dict, dict, set]:
    """What a round trip must keep: node types, params and links (not positions or titles)."""
    types = {n.id: n.type for n in graph.nodes.values()}
    params = {n.id: dict(n.params) for n in graph.nodes.values()}
    links = {(lk.src, lk.output, lk.dst, lk.input) for lk in graph.links}
    return types, params, links


def strip_meta(prompt: dict[str, Any]) -> dict[str, Any]:
    """An API prompt without its ``_meta`` entries (titles: informative only, ComfyUI ignores them)."""
    return {k: {f: v for f, v in e.items() if f != "_meta"} for k, e in prompt.items()}
