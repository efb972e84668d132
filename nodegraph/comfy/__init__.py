"""Interoperability with ComfyUI: its API ("prompt") format. Torch-free, like the rest of the engine.

- :func:`~nodegraph.comfy.api_format.to_api_prompt` exports a graph of ComfyUI-named node types to
  ``{id: {"class_type": ..., "inputs": {...}}}`` (what SaveImage embeds as the PNG ``prompt`` chunk);
  :func:`~nodegraph.comfy.export.export_prompt` exports a whole graph or names the nodes that cannot go.
- :func:`~nodegraph.comfy.detect.open_graph` opens any graph file: ours, a ComfyUI UI workflow
  (``ui_format``) or API prompt (``api_import``), or a PNG/WebP carrying one. See docs/comfyui.md.
"""
from __future__ import annotations

from .api_format import to_api_prompt
from .detect import load_graph, open_graph
from .export import export_prompt

__all__ = ["export_prompt", "load_graph", "open_graph", "to_api_prompt"]
