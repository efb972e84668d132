"""Primitive nodes: one value that drives params of several nodes (ComfyUI's ``PrimitiveInt``,
``PrimitiveFloat``, ``PrimitiveString``, ``PrimitiveStringMultiline`` and ``PrimitiveBoolean``).

Each outputs its ``value``; a link from it into a param of the same kind on any number of nodes
overrides that param (e.g. one seed for several samplers). A ComfyUI ``PrimitiveNode`` that feeds
more than one param is imported as one of these (see nodegraph/comfy/ui_format.py).
"""
from __future__ import annotations

import sys

from nodegraph import Boolean, Float, Int, String, node

CATEGORY = "utils/primitive"


@node("PrimitiveInt", display_name="Int", category=CATEGORY,
      params=[Int("value", 0, min=-sys.maxsize, max=sys.maxsize, control_after_run="randomize",
                  description="the whole number every linked param gets")],
      outputs={"INT": "INT"})
def primitive_int(value: int) -> int:
    """One whole number for several params: link its output into each of them (a seed shared by
    two samplers, a size shared by several nodes). Like a seed, it can change after each run."""
    return value


@node("PrimitiveFloat", display_name="Float", category=CATEGORY,
      params=[Float("value", 0.0, min=-sys.maxsize, max=sys.maxsize,
                    description="the number every linked param gets")],
      outputs={"FLOAT": "FLOAT"})
def primitive_float(value: float) -> float:
    """One number for several params: link its output into each of them (e.g. one cfg or denoise
    for several samplers)."""
    return value


@node("PrimitiveString", display_name="String", category=CATEGORY,
      params=[String("value", "", description="the text every linked param gets")],
      outputs={"STRING": "STRING"})
def primitive_string(value: str) -> str:
    """One line of text for several params: link its output into each of them (a file name prefix,
    a choice such as a sampler name)."""
    return value


@node("PrimitiveStringMultiline", display_name="String (Multiline)", category=CATEGORY,
      params=[String("value", "", multiline=True, description="the text every linked param gets")],
      outputs={"STRING": "STRING"})
def primitive_string_multiline(value: str) -> str:
    """One text of several lines for several params: link its output into each of them (a prompt
    shared by two text encoders)."""
    return value


@node("PrimitiveBoolean", display_name="Boolean", category=CATEGORY,
      params=[Boolean("value", False, description="the true/false every linked param gets")],
      outputs={"BOOLEAN": "BOOLEAN"})
def primitive_boolean(value: bool) -> bool:
    """One true/false for several params: link its output into each of them."""
    return value


NODES = [primitive_int, primitive_float, primitive_string, primitive_string_multiline, primitive_boolean]
