"""Notes: text on the canvas that does nothing when the graph runs (ComfyUI's ``Note`` and
``MarkdownNote``, so that imported workflows keep theirs).

A note has no inputs and no outputs and is not an output node, so a run never visits it and the
ComfyUI export leaves it out, as ComfyUI's own frontend does.
"""
from __future__ import annotations

from nodegraph import String, node


@node("Note", display_name="Note", category="utils",
      params=[String("text", "", multiline=True, description="the note's text")])
def note(text: str) -> None:
    """A plain-text note on the canvas."""


@node("MarkdownNote", display_name="Markdown Note", category="utils",
      params=[String("text", "", multiline=True, description="the note's text, in Markdown")])
def markdown_note(text: str) -> None:
    """A note whose text is Markdown (editors may render it)."""


NODES = [note, markdown_note]
