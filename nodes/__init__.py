"""NodeGraph's built-in node pack (Stable Diffusion), registered through the same pluggy hooks as
any third-party pack (see docs/plugins.md). Its type ids are bare ComfyUI names (``KSampler``).

Each node module ``nodes/<name>.py`` defines ``NODES``: a list of NodeSpec objects. To add a
module, add its name to ``MODULES`` — nothing else. Heavy imports (torch) belong inside the node
functions or in ``nodes/sd/``, so that listing nodes stays fast.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator

from nodegraph import NodeSpec, SocketType, hookimpl
from nodegraph.registry import ModelLocator

MODULES: tuple[str, ...] = (
    "loaders",
    "conditioning",
    "regions",
    "latent",
    "latent_ops",
    "sampling",
    "custom_sampling",
    "sampler_nodes",
    "model_patches",
    "guidance_patches",
    "image",
    "image_ops",
    "image_filters",
    "mask",
    "inpaint",
    "compositing",
    "animation",
    "upscale",
    "controlnet",
    "merging",
    "saving",
    "notes",
    "primitives",
)

SOCKET_TYPES = (
    SocketType("MODEL", "#b39ddb", "a diffusion model (U-Net + its noise schedule)"),
    SocketType("CLIP", "#ffd54f", "a text encoder with its tokenizer"),
    SocketType("VAE", "#ff6e6e", "an image autoencoder"),
    SocketType("CONDITIONING", "#ffa931", "encoded prompt(s) with their options"),
    SocketType("LATENT", "#ff9cf9", "latent images: {'samples': [B,4,H/8,W/8]}"),
    SocketType("IMAGE", "#64b5f6", "images: float tensor [B,H,W,C] in 0..1"),
    SocketType("MASK", "#81c784", "masks: float tensor [B,H,W] in 0..1"),
    SocketType("UPSCALE_MODEL", "#90a4ae", "an image upscaling model"),
    SocketType("CONTROL_NET", "#00d78d", "a ControlNet, T2I-Adapter or Control-LoRA"),
    SocketType("NOISE", "#b0bec5", "a seeded noise source"),
    SocketType("GUIDER", "#66ffff", "a model with its guidance (e.g. CFG)"),
    SocketType("SAMPLER", "#ecb4b4", "a sampling algorithm"),
    SocketType("SIGMAS", "#cdffcd", "a noise schedule: 1-D tensor of sigmas ending in 0"),
)


@hookimpl
def nodegraph_register_types() -> tuple[SocketType, ...]:
    return SOCKET_TYPES


@hookimpl
def nodegraph_register_nodes() -> Iterator[NodeSpec]:
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        yield from module.NODES


@hookimpl
def nodegraph_model_locators() -> list[ModelLocator]:
    from .runtime import locate_model

    return [locate_model]


def builtin_specs() -> dict[str, NodeSpec]:
    """Every built-in node spec by type id (without building a registry), e.g. for exporting a graph
    to ComfyUI's API format."""
    return {spec.type_id: spec for spec in nodegraph_register_nodes()}
