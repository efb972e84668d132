"""Interoperability with ComfyUI: its API ("prompt") format. Torch-free, like the rest of the engine.

- :func:`~nodegraph.comfy.api_format.to_api_prompt` exports a graph of ComfyUI-named node types to
  ``{id: {"class_type": ..., "inputs": {...}}}`` (what SaveImage embeds as the PNG ``prompt`` chunk).
"""
from __future__ import annotations

from .api_format import to_api_prompt

__all__ = ["to_api_prompt"]
