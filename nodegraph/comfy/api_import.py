"""Import ComfyUI's API "prompt" format: ``{id: {"class_type": ..., "inputs": {...}, "_meta": {...}}}``.

An input whose value is ``[source id, output index]`` is a link; any other value is a widget value.
A node of a type we have gets its params by name (values for inputs we do not have are kept in
``comfyui.inputs`` and written back on export); ``_meta.title`` becomes its title when it differs
from the type's display name. Other types become placeholders keeping their inputs as ComfyUI
wrote them. The format has no positions, so the nodes are laid out left to right by their depth in
the graph (:func:`layout`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..graph import Graph, Link, Node, id_sort_key
from ..registry import NodeSpec
from .common import (COMFY_KEY, ImportReport, SpecsArg, import_error, make_placeholder,
                     mapped_spec, resolve_specs)
from .prompt_text import import_value, prompt_notes

COLUMN_GAP = 80.0
ROW_GAP = 40.0
NODE_WIDTH = 320.0


def looks_like_prompt(data: Any) -> bool:
    """Whether parsed JSON is an API prompt (or ``{"prompt": prompt}``, the body ``/prompt`` takes)."""
    return _is_prompt(unwrap(data))


def _is_prompt(data: Any) -> bool:
    return (isinstance(data, dict) and bool(data)
            and all(isinstance(v, dict) and "class_type" in v for v in data.values()))


def unwrap(data: Any) -> Any:
    """The prompt inside ``{"prompt": prompt, ...}`` (the body of a ``/prompt`` request), else ``data``."""
    if isinstance(data, dict) and not _is_prompt(data) and _is_prompt(data.get("prompt")):
        return data["prompt"]
    return data


def is_link(value: Any) -> bool:
    """ComfyUI's test: a two-item list of a node id and an output index (ComfyUI wants the id as a
    string; an integer id, as scripts sometimes write it, is accepted too)."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool) and type(value[1]) is int)


def from_prompt(data: Any, specs: SpecsArg = None, source: str | None = None
                ) -> tuple[Graph, ImportReport]:
    """Build a laid-out Graph from a parsed API prompt. Raises GraphLoadError (code
    ``bad_comfyui``) only when the data is not a prompt."""
    if not looks_like_prompt(data):
        raise import_error("not a ComfyUI API prompt: expected an object mapping node ids to "
                           "{\"class_type\": ..., \"inputs\": {...}}", source)
    data = unwrap(data)
    specs = resolve_specs(specs)
    report = ImportReport("prompt")
    graph = Graph()
    pending: list[tuple[str, str, Any]] = []  # (node id, input name, [src, index])
    for raw_id, entry in data.items():
        node_id = str(raw_id)
        if not node_id:
            raise import_error("a node id is empty; ids are the prompt's keys, such as \"3\"", source)
        class_type = entry.get("class_type")
        inputs = entry.get("inputs")
        if not isinstance(class_type, str) or not class_type:
            raise import_error(f"node {node_id}: \"class_type\" must be a non-empty string", source, node_id)
        if not isinstance(inputs, dict):
            if inputs is not None:
                raise import_error(f"node {node_id}: \"inputs\" must be an object", source, node_id)
            inputs = {}
        meta = entry.get("_meta") if isinstance(entry.get("_meta"), dict) else {}
        title = meta.get("title") if isinstance(meta.get("title"), str) else None
        spec = mapped_spec(specs, class_type)
        if spec is None:
            report.unknown[class_type] += 1
            node = make_placeholder(node_id, class_type, {"inputs": dict(inputs)}, title=title)
            pending += [(node_id, name, v) for name, v in inputs.items() if is_link(v)]
        else:
            plain = title in (spec.display_name, class_type)  # no title of its own
            node = Node(node_id, class_type, title=None if plain else title)
            kept: dict[str, Any] = {}
            for name, value in inputs.items():
                if is_link(value) and (spec.input(name) is not None or spec.param(name) is not None):
                    pending.append((node_id, name, value))
                elif spec.param(name) is not None:
                    node.params[name] = import_value(class_type, name, value)
                else:
                    kept[name] = value
                    if spec.input(name) is not None:
                        report.notes.append(f"node {node_id} ({class_type}) input {name!r}: "
                                            f"{value!r} is not a link; kept but not used")
            if kept:
                node.extra[COMFY_KEY] = {"inputs": kept}
        graph.add(node)

    for node_id, name, (src, index) in pending:
        src = str(src)
        if not src or not name:
            report.notes.append(f"node {node_id} input {name!r}: a link from node {src!r} cannot be "
                                "kept (empty id or name); left unconnected")
            continue
        graph.add_link(Link(src, _output_name(graph, specs, src, index), node_id, name))
    report.notes.extend(prompt_notes(graph))
    layout(graph, specs)
    graph.meta["imported_from"] = "ComfyUI API prompt"
    graph.revision = 0
    return graph, report


def _output_name(graph: Graph, specs: Mapping[str, NodeSpec], src: str, index: int) -> str:
    """Our name of output ``index`` of node ``src``; a placeholder's outputs are named by index."""
    node = graph.nodes.get(src)
    spec = mapped_spec(specs, node.type) if node is not None else None
    if spec is not None and 0 <= index < len(spec.outputs):
        return spec.outputs[index].name
    return f"output_{index}"


# -- layout ------------------------------------------------------------------------------------------
def layout(graph: Graph, specs: Mapping[str, NodeSpec] | None = None) -> None:
    """Place nodes left to right by depth (longest chain of links from a node without inputs);
    within a column, order nodes by the mean row of what feeds them, so links mostly run straight."""
    depth: dict[str, int] = {}
    order = _topological(graph)
    for node_id in order:
        srcs = [lk.src for lk in graph.inputs_of(node_id).values() if lk.src in depth]
        depth[node_id] = 1 + max((depth[s] for s in srcs), default=-1)
    columns: dict[int, list[str]] = {}
    for node_id in order:
        columns.setdefault(depth[node_id], []).append(node_id)
    row: dict[str, float] = {}
    x = 0.0
    for d in sorted(columns):
        ids = columns[d]

        def weight(node_id: str) -> tuple[float, tuple[int, int, str]]:
            srcs = [row[lk.src] for lk in graph.inputs_of(node_id).values() if lk.src in row]
            return (sum(srcs) / len(srcs) if srcs else 0.0, id_sort_key(node_id))

        ids.sort(key=weight)
        y = 0.0
        for i, node_id in enumerate(ids):
            row[node_id] = i
            node = graph.nodes[node_id]
            node.pos = (x, y)
            spec = mapped_spec(specs, node.type) if specs is not None else None
            y += _height(graph, node, spec) + ROW_GAP
        x += NODE_WIDTH + COLUMN_GAP


def _height(graph: Graph, node: Node, spec: NodeSpec | None) -> float:
    """About the height an editor draws the node at: a title bar, a row per socket, a row per param
    (a text box for a multiline one, an extra row for a seed's control)."""
    if spec is None:
        sockets = max(len(graph.inputs_of(node.id)), len({lk.output for lk in graph.links_from(node.id)}))
        return 26.0 + 20.0 * sockets + 22.0 * len(node.params) + 16.0
    sockets = max(len(spec.inputs), len(spec.outputs))
    params = sum(68.0 if p.multiline else 22.0 + (18.0 if p.control_after_run else 0.0)
                 for p in spec.params)
    return 26.0 + 20.0 * sockets + params + 16.0


def _topological(graph: Graph) -> list[str]:
    """Node ids, sources first (ids order breaks ties; nodes on a cycle come last)."""
    indeg = {n: 0 for n in graph.nodes}
    for lk in graph.iter_links():
        if lk.src in indeg and lk.dst in indeg:
            indeg[lk.dst] += 1
    ready = sorted((n for n, d in indeg.items() if d == 0), key=id_sort_key, reverse=True)
    out: list[str] = []
    while ready:
        n = ready.pop()
        out.append(n)
        for lk in graph.links_from(n):
            if lk.dst in indeg:
                indeg[lk.dst] -= 1
                if indeg[lk.dst] == 0:
                    ready.append(lk.dst)
                    ready.sort(key=id_sort_key, reverse=True)
    done = set(out)
    return out + sorted((n for n in graph.nodes if n not in done), key=id_sort_key)
