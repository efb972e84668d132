"""Interoperability with ComfyUI: its UI ("workflow") and API ("prompt") formats. Torch-free, like the
rest of the engine.

- :func:`~nodegraph.comfy.api_format.to_api_prompt` exports a graph of ComfyUI-named node types to
  ``{id: {"class_type": ..., "inputs": {...}}}`` (what SaveImage embeds as the PNG ``prompt`` chunk);
  :func:`~nodegraph.comfy.export.export_prompt` exports a whole graph or names the nodes that cannot go.
- :func:`~nodegraph.comfy.ui_format.from_workflow` and :func:`~nodegraph.comfy.api_import.from_prompt`
  import them; :mod:`nodegraph.opening` opens files in these formats (and PNG/WebP images carrying
  them) through its readers. See docs/comfyui.md.
"""
from __future__ import annotations

from .api_format import to_api_prompt
from .api_import import from_prompt
from .export import export_prompt
from .ui_format import from_workflow

__all__ = ["export_prompt", "from_prompt", "from_workflow", "to_api_prompt"]
