"""Square brackets in prompts: plain text in ComfyUI, a ÷1.1 weight in NodeGraph (A1111's convention).

So that an imported prompt means what it meant in ComfyUI (same tokens, same weights, same image
for a seed), the importers escape every ``[`` and ``]`` (``\\[``, ``\\]``), which NodeGraph reads as
literal brackets; the exporter undoes that. A prompt written in NodeGraph that uses ``[word]`` as a
weight is exported with ComfyUI's explicit syntax instead, ``(word:0.9090909090909091)``, which
ComfyUI weighs the same.
"""
from __future__ import annotations

import re
from typing import Any

from ..graph import Graph, id_sort_key
from ..prompt_weights import parse_prompt_weights
from .common import PROMPT_PARAMS

_UNESCAPED = re.compile(r"(?<!\\)[\[\]]")
_EMBEDDING = re.compile(r"embedding:([^\s,()\[\]\\]+)")


def escape_brackets(text: str) -> str:
    """ComfyUI prompt text → NodeGraph prompt text with the same meaning."""
    return text.replace("[", "\\[").replace("]", "\\]")


def unescape_brackets(text: str) -> str:
    """Undo :func:`escape_brackets` (``\\[`` → ``[``, ``\\]`` → ``]``)."""
    return text.replace("\\[", "[").replace("\\]", "]")


def to_comfy_text(text: str) -> str:
    """NodeGraph prompt text → ComfyUI prompt text that ComfyUI weighs the same."""
    if not _UNESCAPED.search(text):
        return unescape_brackets(text)
    ours = _merged(parse_prompt_weights(text, square_brackets=True))
    plain = unescape_brackets(text)
    if _merged(parse_prompt_weights(plain, square_brackets=False)) == ours:
        return plain  # the brackets were plain text here too (e.g. a lone "[")
    return "".join(piece if weight == 1.0 else f"({piece}:{weight!r})"
                   for piece, weight in ((_escape_parens(p), w) for p, w in ours))


def _escape_parens(piece: str) -> str:
    return piece.replace("(", "\\(").replace(")", "\\)")


def _merged(pieces: list[tuple[str, float]]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for piece, weight in pieces:
        if out and out[-1][1] == weight:
            out[-1] = (out[-1][0] + piece, weight)
        else:
            out.append((piece, weight))
    return out


def import_value(class_type: str, name: str, value: Any) -> Any:
    """A ComfyUI param value as NodeGraph stores it (prompt brackets escaped)."""
    if (class_type, name) in PROMPT_PARAMS and isinstance(value, str):
        return escape_brackets(value)
    return value


def export_value(class_type: str, name: str, value: Any) -> Any:
    """A NodeGraph param value as ComfyUI reads it (prompt brackets unescaped or rewritten)."""
    if (class_type, name) in PROMPT_PARAMS and isinstance(value, str):
        return to_comfy_text(value)
    return value


def prompt_notes(graph: Graph) -> list[str]:
    """Remarks on imported prompts: the textual-inversion embeddings (``embedding:name``) they use,
    whose files must be in an ``embeddings`` model folder here too (a missing one is left out of the
    prompt with a warning, as in ComfyUI, and the image differs from one made with it)."""
    notes = []
    for node_id in sorted(graph.nodes, key=id_sort_key):
        node = graph.nodes[node_id]
        for class_type, name in PROMPT_PARAMS:
            value = node.params.get(name) if node.type == class_type else None
            found = _EMBEDDING.findall(value) if isinstance(value, str) else []
            if found:
                notes.append(f"node {node_id} ({node.type}) param {name}: the prompt uses textual-inversion "
                             f"embedding(s) {', '.join(found)}; put the file(s) in an 'embeddings' model "
                             "folder (one missing there is left out of the prompt with a warning, as in ComfyUI)")
    return notes
