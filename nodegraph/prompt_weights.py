"""Prompt weighting: split a prompt into text pieces, each with the weight its brackets give it.

The syntax and its meaning follow ComfyUI (``comfy/sd1_clip.py``), so prompts written for ComfyUI
weigh the same here:

- ``(text)`` multiplies the weight of ``text`` by 1.1; groups nest: ``((text))`` is 1.1².
- ``(text:1.3)`` sets the weight of ``text`` to 1.3 (the number after the *last* colon); it
  replaces the inherited weight rather than multiplying it, and groups nested inside start from it.
  When what follows the colon is not a number the colon is ordinary text: ``(a:b)`` is ``a:b``
  at weight 1.1.
- ``\\(`` and ``\\)`` are literal parentheses (the backslash is dropped).
- A group that never closes is ordinary text, and so is a stray ``)``. The scanner counts
  nesting exactly as ComfyUI's does, so even odd inputs such as ``a) ((b))`` split the same way.

One extension, asked for by NodeGraph's issue 3 and *not* part of ComfyUI: ``[text]`` divides the
weight by 1.1 (A1111's convention), with ``\\[`` / ``\\]`` as literal brackets. ComfyUI reads square
brackets as plain text, so a prompt containing them encodes differently there; pass
``square_brackets=False`` to get ComfyUI's reading exactly.
"""

from __future__ import annotations

_UP = 1.1  # the factor one pair of parentheses applies (and one pair of square brackets removes)

# Escaped brackets are swapped for private placeholders while parsing and restored afterwards.
# The placeholders are control characters that never survive CLIP's text clean-up anyway.
_ESCAPES = {"\\(": "\x00\x01", "\\)": "\x00\x02", "\\[": "\x00\x03", "\\]": "\x00\x04"}


def parse_prompt_weights(text: str, square_brackets: bool = True) -> list[tuple[str, float]]:
    """Split ``text`` into ``(piece, weight)`` pairs in reading order, brackets removed.

    Unweighted text has weight 1.0. Empty pieces are dropped. Example::

        >>> parse_prompt_weights("a (red:1.5) [cat]")
        [('a ', 1.0), ('red', 1.5), (' ', 1.0), ('cat', 0.9090909090909091)]
    """
    escapes = _ESCAPES if square_brackets else {k: v for k, v in _ESCAPES.items() if k[1] in "()"}
    for escape, placeholder in escapes.items():
        text = text.replace(escape, placeholder)
    pieces = _weigh(text, 1.0, "([" if square_brackets else "(")
    restored = []
    for piece, weight in pieces:
        for escape, placeholder in escapes.items():
            piece = piece.replace(placeholder, escape[1])
        if piece:
            restored.append((piece, weight))
    return restored


def _weigh(text: str, weight: float, openers: str) -> list[tuple[str, float]]:
    """Weights of the top-level pieces of ``text`` (inherited weight ``weight``), recursing into groups."""
    out: list[tuple[str, float]] = []
    for part in _split_groups(text, openers):
        kind = _group_kind(part, openers)
        if kind == "(":
            inner, inner_weight = part[1:-1], weight * _UP
            colon = inner.rfind(":")
            if colon > 0:
                explicit = _as_float(inner[colon + 1:])
                if explicit is not None:
                    inner, inner_weight = inner[:colon], explicit
            out += _weigh(inner, inner_weight, openers)
        elif kind == "[":
            out += _weigh(part[1:-1], weight / _UP, openers)
        else:
            out.append((part, weight))
    return out


def _split_groups(text: str, openers: str) -> list[str]:
    """Cut ``text`` into plain runs and outermost bracket groups.

    Nesting is one counter for every bracket kind: an opener at depth 0 starts a group, a closer
    that brings the depth back to 0 ends it. A closer at depth 0 is text and drives the depth
    negative, as in ComfyUI's scanner (which this reproduces for parentheses).
    """
    closers = {"(": ")", "[": "]"}
    closing = "".join(closers[o] for o in openers)
    parts: list[str] = []
    current = ""
    depth = 0
    for char in text:
        if char in openers:
            if depth == 0:
                if current:
                    parts.append(current)
                current = char
            else:
                current += char
            depth += 1
        elif char in closing:
            depth -= 1
            current += char
            if depth == 0:
                parts.append(current)
                current = ""
        else:
            current += char
    if current:
        parts.append(current)
    return parts


def _group_kind(part: str, openers: str) -> str | None:
    """'(' or '[' when ``part`` is a bracketed group whose ends match, else None (plain text)."""
    if len(part) >= 2 and part[0] in openers and part[-1] == {"(": ")", "[": "]"}[part[0]]:
        return part[0]
    return None


def _as_float(text: str) -> float | None:
    """The number ``text`` spells, as Python's ``float`` reads it (ComfyUI uses ``float``), or None."""
    try:
        return float(text)
    except ValueError:
        return None
