"""Open any graph file NodeGraph understands, whatever its format — the one entry point for
``api.load``, ``nodegraph run`` and ``validate``, ``nodegraph import-comfy`` and the editor's Open
and drag-and-drop:

- a NodeGraph graph file (``"format": "nodegraph"``, :mod:`nodegraph.format`);
- data in a format a :class:`GraphReader` reads: :data:`READERS` holds ComfyUI's UI workflow
  (versions 0.4 and 1) and API prompt (:mod:`nodegraph.comfy`); :func:`register_reader` adds more;
- a PNG or WebP image carrying a graph: NodeGraph's ``nodegraph`` chunk first, else the chunk of
  each reader in turn (ComfyUI's ``workflow`` chunk, which has the layout, groups and notes, then
  its ``prompt``).

:func:`nodegraph.format.load` reads NodeGraph's own files only, with the same pieces of
:mod:`nodegraph.format` (file bytes, image metadata).

Everything that goes wrong is a :class:`~nodegraph.errors.GraphLoadError` naming the file.

    from nodegraph.opening import open_graph
    opened = open_graph("ComfyUI_00001_.png", registry.nodes)
    opened.graph, opened.kind, opened.report.lines()
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import format as graph_format
from .comfy.api_import import from_prompt, looks_like_prompt
from .comfy.common import ImportReport, SpecsArg
from .comfy.ui_format import from_workflow, looks_like_workflow
from .errors import GraphLoadError, Problem
from .graph import Graph

NODEGRAPH = "nodegraph"
WORKFLOW = "comfyui-workflow"
PROMPT = "comfyui-prompt"


@dataclass(frozen=True)
class GraphReader:
    """A graph format other than NodeGraph's own that files may be opened from.

    ``detect(data)`` says whether parsed JSON is in this format; ``read(data, specs, source)``
    turns it into ``(graph, report)``, mapping its node types onto ``specs`` (the registry's node
    specs, or a function returning them, called only when needed). ``chunk`` is the image
    metadata key that carries this format."""

    kind: str
    chunk: str
    detect: Callable[[Any], bool]
    read: Callable[[Any, SpecsArg, str | None], tuple[Graph, ImportReport]]


READERS: list[GraphReader] = [
    GraphReader(WORKFLOW, graph_format.COMFY_CHUNKS[0], looks_like_workflow, from_workflow),
    GraphReader(PROMPT, graph_format.COMFY_CHUNKS[1], looks_like_prompt, from_prompt),
]
"""The formats files are opened from besides NodeGraph's own, tried in this order."""


def register_reader(reader: GraphReader) -> None:
    """Open files of another format too (a reader of the same ``kind`` is replaced)."""
    READERS[:] = [r for r in READERS if r.kind != reader.kind] + [reader]


@dataclass
class Opened:
    """A graph read from a file: which format it was in and, for a foreign format, the import report."""

    graph: Graph
    kind: str
    """:data:`NODEGRAPH` or a reader's kind (:data:`WORKFLOW`, :data:`PROMPT`)."""
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
    """The format of parsed JSON: :data:`NODEGRAPH`, a reader's kind, or None."""
    if _is_ours(data):
        return NODEGRAPH
    reader = _reader_for(data, READERS)
    return reader.kind if reader is not None else None


def from_data(data: Any, specs: SpecsArg = None, source: str | None = None) -> Opened:
    """A graph from parsed JSON in any of the formats (data in no known format raises NodeGraph's
    own "this is not a NodeGraph file" error)."""
    reader = None if _is_ours(data) else _reader_for(data, READERS)
    if reader is None:
        return Opened(graph_format.from_data(data, source), NODEGRAPH)
    graph, report = reader.read(data, specs, source)
    return Opened(graph, reader.kind, report)


def open_graph(path: str | os.PathLike[str], specs: SpecsArg = None) -> Opened:
    """Read a graph file, or an image carrying a graph, in any of the formats (see the module
    docstring). ``specs`` are the node specs foreign node types map onto (a mapping, or a function
    returning one); they are looked up only for foreign data."""
    source = str(path)
    raw = graph_format.read_file(path)
    if graph_format.is_image(raw[:12]):
        return _from_image(Path(path), specs)
    return from_data(graph_format.parse_json(raw, source), specs, source)


def load_graph(path: str | os.PathLike[str], specs: SpecsArg = None) -> Graph:
    """:func:`open_graph`, returning only the graph."""
    return open_graph(path, specs).graph


def _from_image(path: Path, specs: SpecsArg) -> Opened:
    source = str(path)
    names = (graph_format.PNG_CHUNK, *(r.chunk for r in READERS))
    chunks = graph_format.image_chunks(path, names)
    if graph_format.PNG_CHUNK in chunks:
        return Opened(graph_format.loads(chunks[graph_format.PNG_CHUNK], source), NODEGRAPH, image=True)
    for name in names[1:]:
        if name in chunks:
            data = graph_format.parse_json(chunks[name], source)
            reader = _reader_for(data, READERS)
            if reader is not None:
                graph, report = reader.read(data, specs, source)
                return Opened(graph, reader.kind, report, image=True)
    listed = ", ".join(repr(n) for n in names[:-1]) + f" or {names[-1]!r}"
    raise GraphLoadError([Problem("no_graph", f"the image carries no graph: no {listed} metadata (it "
                                  "was not saved by NodeGraph or ComfyUI, or the metadata was "
                                  "stripped)")], source)


def _is_ours(data: Any) -> bool:
    return isinstance(data, dict) and data.get("format") == graph_format.FORMAT


def _reader_for(data: Any, readers: Sequence[GraphReader]) -> GraphReader | None:
    return next((r for r in readers if r.detect(data)), None)
