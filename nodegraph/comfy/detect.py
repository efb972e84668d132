"""Open any graph file NodeGraph understands, whatever its format — the one entry point for
``api.load``, ``nodegraph run``, ``nodegraph import-comfy`` and the editor's Open and drag-and-drop.

- a NodeGraph graph file (``"format": "nodegraph"``);
- a ComfyUI UI workflow (versions 0.4 and 1) or API prompt, as JSON;
- a PNG or WebP image carrying a graph: NodeGraph's ``nodegraph`` chunk first, else ComfyUI's
  ``workflow`` chunk (it has the layout, groups and notes), else its ``prompt`` chunk.

Everything that goes wrong is a :class:`~nodegraph.errors.GraphLoadError` naming the file.

    from nodegraph.comfy.detect import open_graph
    opened = open_graph("ComfyUI_00001_.png")
    opened.graph, opened.kind, opened.report.lines()
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import format as graph_format
from ..errors import GraphLoadError, Problem
from ..graph import Graph
from .api_import import from_prompt, looks_like_prompt
from .common import ImportReport, SpecsArg
from .ui_format import from_workflow, looks_like_workflow

NODEGRAPH = "nodegraph"
WORKFLOW = "comfyui-workflow"
PROMPT = "comfyui-prompt"

WEBP_MAGIC = (b"RIFF", b"WEBP")


@dataclass
class Opened:
    """A graph read from a file: which format it was in and, for ComfyUI data, the import report."""

    graph: Graph
    kind: str
    """:data:`NODEGRAPH`, :data:`WORKFLOW` or :data:`PROMPT`."""
    report: ImportReport | None = None
    image: bool = False
    """Whether the graph came out of an image (so saving it needs a new file name)."""

    @property
    def is_comfyui(self) -> bool:
        return self.kind != NODEGRAPH

    @property
    def keeps_path(self) -> bool:
        """Whether saving may write back to the file it came from: only for our own graph files (an
        image, or a ComfyUI file rewritten in our format, would be lost), so editors ask for a name."""
        return self.kind == NODEGRAPH and not self.image


def detect(data: Any) -> str | None:
    """The format of parsed JSON: :data:`NODEGRAPH`, :data:`WORKFLOW`, :data:`PROMPT`, or None."""
    if isinstance(data, dict) and data.get("format") == graph_format.FORMAT:
        return NODEGRAPH
    if looks_like_workflow(data):
        return WORKFLOW
    if looks_like_prompt(data):
        return PROMPT
    return None


def from_data(data: Any, specs: SpecsArg = None, source: str | None = None) -> Opened:
    """A graph from parsed JSON in any of the formats (an unknown one raises NodeGraph's own
    "this is not a NodeGraph file" error)."""
    kind = detect(data)
    if kind == WORKFLOW:
        graph, report = from_workflow(data, specs, source)
        return Opened(graph, kind, report)
    if kind == PROMPT:
        graph, report = from_prompt(data, specs, source)
        return Opened(graph, kind, report)
    return Opened(graph_format.from_data(data, source), NODEGRAPH)


def open_graph(path: str | os.PathLike[str], specs: SpecsArg = None) -> Opened:
    """Read a graph file, ComfyUI JSON, or an image carrying either (see the module docstring).

    ``specs`` are the node specs ComfyUI types map onto (default: the default session's registry;
    they are looked up only for ComfyUI data)."""
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        code = "not_found" if isinstance(exc, FileNotFoundError) else "unreadable"
        raise GraphLoadError([Problem(code, f"cannot read the file: {exc.strerror or exc}")],
                             source) from None
    if raw.startswith(graph_format.PNG_MAGIC) or (raw[:4] == WEBP_MAGIC[0] and raw[8:12] == WEBP_MAGIC[1]):
        return _from_image(path, specs)
    return from_data(graph_format.parse_json(raw, source), specs, source)


def load_graph(path: str | os.PathLike[str], specs: SpecsArg = None) -> Graph:
    """:func:`open_graph`, returning only the graph."""
    return open_graph(path, specs).graph


def image_chunks(path: str | os.PathLike[str]) -> dict[str, str]:
    """The graph chunks an image carries (``nodegraph``, ``prompt``, ``workflow``), as JSON text."""
    try:
        from nodes.imageio import ImageLoadError, read_graph_from_png
    except ImportError:  # without the built-in pack: PNG text chunks only
        return graph_format.read_png_text(path)
    try:
        return read_graph_from_png(path)
    except ImageLoadError as exc:
        raise GraphLoadError([Problem("bad_png", str(exc))], str(path)) from None


def _from_image(path: Path, specs: SpecsArg) -> Opened:
    source = str(path)
    chunks = image_chunks(path)
    if graph_format.PNG_CHUNK in chunks:
        return Opened(graph_format.loads(chunks[graph_format.PNG_CHUNK], source), NODEGRAPH, image=True)
    for key in ("workflow", "prompt"):
        if key in chunks:
            data = graph_format.parse_json(chunks[key], source)
            if detect(data) in (WORKFLOW, PROMPT):
                opened = from_data(data, specs, source)
                opened.image = True
                return opened
    raise GraphLoadError([Problem("no_graph", "the image carries no graph: no 'nodegraph', 'workflow' or "
                                  "'prompt' metadata (it was not saved by NodeGraph or ComfyUI, or "
                                  "the metadata was stripped)")], source)
