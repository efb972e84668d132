"""The params a node gets when the user adds it: its defaults, made to work for a beginner.

- A param choosing a file (a COMBO whose choices are listed at run time, e.g. Load Checkpoint's
  ``ckpt_name``) starts at the first file offered, never at "" (which no run accepts).
- A latent of a given size (Empty Latent Image's ``width`` and ``height``) starts at the native
  resolution of the checkpoint the graph loads: the ``modelspec.resolution`` its safetensors file
  states (the shipped demo checkpoint says 64x64), else its family's usual size (SD1 512, SD2 768,
  SDXL 1024), read from the file's header only.
"""
from __future__ import annotations

import json
import os
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

from nodegraph.context import RunOptions
from nodegraph.graph import Graph, id_sort_key
from nodegraph.registry import COMBO, INT, NodeSpec, Registry

CHECKPOINT_PARAM = "ckpt_name"
"""The param naming a checkpoint file (ComfyUI's name, on every checkpoint loader)."""
FAMILY_SIZES = {"sd1": 512, "sd2": 768, "sdxl": 1024}
_RESOLUTION = re.compile(r"^\s*(\d+)\s*[x×,]\s*(\d+)\s*$")
_MAX_HEADER = 100 * 1024 * 1024


def new_node_params(spec: NodeSpec, graph: Graph, registry: Registry,
                    options: RunOptions | None) -> dict[str, Any]:
    """The params of a new node of ``spec`` in ``graph`` (see the module docstring)."""
    params = spec.default_params()
    for p in spec.params:
        if p.kind == COMBO and callable(p.choices):
            try:
                choices = p.resolve_choices(options)
            except Exception:
                continue
            if choices and params.get(p.name) not in choices:
                params[p.name] = choices[0]
    if _is_latent_size(spec):
        size = native_size(graph, registry, options)
        if size is not None:
            params["width"], params["height"] = size
    return params


def _is_latent_size(spec: NodeSpec) -> bool:
    """A node making latents of a size it is given (Empty Latent Image and its kind)."""
    width, height = spec.param("width"), spec.param("height")
    return (width is not None and height is not None and width.kind == INT == height.kind
            and any(o.type == "LATENT" for o in spec.outputs) and not spec.inputs)


def native_size(graph: Graph, registry: Registry, options: RunOptions | None) -> tuple[int, int] | None:
    """The size the first checkpoint the graph loads (in node-id order) was made for, if its file
    is found and says so (or its family does)."""
    for node_id in sorted(graph.nodes, key=id_sort_key):
        name = graph.nodes[node_id].params.get(CHECKPOINT_PARAM)
        if not isinstance(name, str) or not name:
            continue
        try:
            path = registry.locate_model(name, options or RunOptions())
        except Exception:
            path = None
        if path is not None:
            try:
                stat = os.stat(path)
            except OSError:
                continue
            size = checkpoint_size(str(path), stat.st_mtime_ns, stat.st_size)
            if size is not None:
                return size
    return None


@lru_cache(maxsize=32)
def checkpoint_size(path: str, _mtime_ns: int = 0, _size: int = 0) -> tuple[int, int] | None:
    """(width, height) a safetensors checkpoint was made for: its ``modelspec.resolution``, else its
    family's usual square size; None for a file that is not safetensors (the arguments after the
    path only key the cache, so an edited file is read again)."""
    header = safetensors_header(Path(path))
    if header is None:
        return None
    metadata = header.get("__metadata__") or {}
    found = _RESOLUTION.match(str(metadata.get("modelspec.resolution", "")))
    if found:
        w, h = (max(16, int(v) // 8 * 8) for v in found.groups())
        return w, h
    size = FAMILY_SIZES.get(family_of(header))
    return (size, size) if size else None


def family_of(header: dict[str, Any]) -> str | None:
    """The model family a checkpoint's tensor names show (SDXL's two text encoders, SD2's
    OpenCLIP, SD1's CLIP; the SDXL refiner counts as SDXL); None if it has no SD U-Net."""
    keys = [k for k in header if k != "__metadata__"]
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        return None
    if any(k.startswith("conditioner.embedders.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    return "sd1"


def safetensors_header(path: Path) -> dict[str, Any] | None:
    """The JSON header of a safetensors file (tensor entries and ``__metadata__``), or None."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > _MAX_HEADER:
                return None
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error):
        return None
    return header if isinstance(header, dict) else None
