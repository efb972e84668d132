"""Tooltips on the canvas: what a param, a socket or a node is, from the specs' descriptions, as
plain text (node descriptions are docstrings: their reStructuredText markup is taken out)."""
from __future__ import annotations

import re

from nodegraph.registry import NodeSpec

from .items.node import Hit

_ROLE = re.compile(r":[A-Za-z_:]+:`~?([^`]*)`")
_LITERAL = re.compile(r"``([^`]*)``")
_INTERPRETED = re.compile(r"`([^`]*)`_?")
_STRONG = re.compile(r"\*\*([^*]+)\*\*")


def plain_text(text: str) -> str:
    """``text`` without reStructuredText markup (``x``, `x`, :func:`x`, **x**, escaped spaces), its
    paragraphs' line breaks joined (docstrings wrap at ~100 columns; a tooltip wraps itself)."""
    text = _ROLE.sub(r"\1", text or "")
    text = _LITERAL.sub(r"\1", text)
    text = _INTERPRETED.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text).replace("\\ ", "")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip())]
    return "\n\n".join(p for p in paragraphs if p)


def tooltip(spec: NodeSpec | None, hit: Hit, node_type: str) -> str:
    """The tooltip for what ``hit`` found on a node of ``spec`` ("" for nothing to say)."""
    if spec is None:
        return f"{node_type}: unknown node type" if hit.kind == "title" else ""
    if hit.kind in ("param", "param_left", "param_right", "param_socket", "control"):
        p = spec.param(hit.name)
        return _titled(hit.name, p.kind, p.description) if p is not None else ""
    if hit.kind == "input":
        i = spec.input(hit.name)
        return _titled(hit.name, i.type + (", optional" if i.optional else ""), i.description) if i else ""
    if hit.kind == "output":
        o = spec.output(hit.name)
        return _titled(hit.name, o.type, o.description) if o is not None else ""
    if hit.kind == "title":
        first = plain_text(spec.description).split("\n\n")[0]
        return f"{spec.display_name} ({spec.type_id})" + (f"\n{first}" if first else "")
    return ""


def _titled(name: str, kind: str, description: str) -> str:
    text = plain_text(description)
    return f"{name} ({kind})" + (f"\n{text}" if text else "")
