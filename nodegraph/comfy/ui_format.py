"""Import ComfyUI's UI "workflow" format (what its Save button writes and its PNGs carry as ``workflow``).

Both versions are read: 0.4, whose links are arrays ``[id, origin, origin_slot, target,
target_slot, type]``, and 1, whose links are objects with those names. How it maps:

- a node of a type we have keeps its id (as a string), position, size, title, colour and mode
  (2 = muted, 4 = bypassed); its ``widgets_values`` fill our params *in ComfyUI's input order*,
  skipping the "control after generate" value ComfyUI stores after a seed (which becomes the
  node's ``control_after_run``); values of widgets we do not have are kept (``comfyui.inputs``);
- links become links; an input "converted to a widget input" and linked feeds our param of that name;
- ``Reroute`` nodes (and the frontend's native reroutes) disappear into the links they carried, their
  positions kept as the link's reroute points;
- a ``PrimitiveNode`` that feeds one param disappears: its value (and control mode) is written into
  that param; one that feeds several params of one kind stays a node — our ``PrimitiveInt``,
  ``PrimitiveFloat``, ``PrimitiveBoolean``, ``PrimitiveString`` or ``PrimitiveStringMultiline`` — linked
  into each of them, so that one value still drives them all;
- ``Note`` and ``MarkdownNote`` stay notes (node types of the built-in pack);
- any other type becomes a placeholder node keeping its ComfyUI data (see common.py); a *bypassed*
  placeholder is wired through on import exactly as ComfyUI's frontend does when it queues the
  workflow (same slot index first, else the first input of the consumer's type) and then kept muted;
- groups keep their title, rectangle and colour.

Prompt texts have their square brackets escaped (see prompt_text.py).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..graph import Graph, Group, Link, Node
from ..registry import BOOLEAN, COMBO, FLOAT, INT, STRING, NodeSpec
from .common import (COMFY_KEY, CONTROL_VALUES, EXTRA_WIDGETS, ImportReport, SpecsArg, control_mode,
                     import_error, make_placeholder, mapped_spec, resolve_specs, takes_control_value)
from .prompt_text import import_value, prompt_notes

REROUTE = "Reroute"
PRIMITIVE = "PrimitiveNode"
MODES = {0: "normal", 2: "muted", 4: "bypassed"}
BYPASS = 4


@dataclass(frozen=True)
class _Link:
    id: int
    origin: str
    origin_slot: int
    target: str
    target_slot: int
    type: Any


def looks_like_workflow(data: Any) -> bool:
    """Whether parsed JSON is a ComfyUI UI workflow (either version)."""
    return (isinstance(data, dict) and isinstance(data.get("nodes"), list)
            and ("links" in data or "last_node_id" in data or "state" in data)
            and data.get("format") != "nodegraph")


def from_workflow(data: Any, specs: SpecsArg = None, source: str | None = None
                  ) -> tuple[Graph, ImportReport]:
    """Build a Graph from a parsed UI workflow. Raises GraphLoadError (code ``bad_comfyui``) only
    when the data is not a workflow at all; anything unusual inside becomes a note in the report."""
    if not looks_like_workflow(data):
        raise import_error("not a ComfyUI workflow: expected an object with \"nodes\" and \"links\"",
                           source)
    return _Importer(data, resolve_specs(specs), source).run()


class _Importer:
    def __init__(self, data: dict[str, Any], specs: Mapping[str, NodeSpec], source: str | None):
        self.data = data
        self.specs = specs
        self.source = source
        self.report = ImportReport("workflow", data.get("version"))
        self.raw: dict[str, dict[str, Any]] = {}
        self.links: dict[int, _Link] = {}
        self.reroute_parent: dict[int, int] = {}  # native reroutes: link id / reroute id -> parent
        self.reroute_pos: dict[int, tuple[float, float]] = {}
        self.reroute_chain: dict[int, int] = {}
        self.primitives_resolved = 0
        self.primitive_uses: dict[str, list[tuple[Node, NodeSpec | None, str, list]]] = {}
        self.primitives_kept = 0
        definitions = data.get("definitions") if isinstance(data.get("definitions"), dict) else {}
        self.subgraphs = {sg["id"]: sg.get("name") or sg["id"] for sg in _list(definitions.get("subgraphs"))
                          if isinstance(sg, dict) and isinstance(sg.get("id"), str)}

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    # -- reading ---------------------------------------------------------------------------
    def run(self) -> tuple[Graph, ImportReport]:
        for i, raw in enumerate(self.data["nodes"]):
            if not (isinstance(raw, dict) and type(raw.get("id")) in (int, str) and raw["id"] != ""
                    and isinstance(raw.get("type"), str) and raw["type"]):
                raise import_error(f"nodes[{i}] is not a ComfyUI node (an object with an id and a type)",
                                   self.source, f"nodes[{i}]")
            node_id = str(raw["id"])
            if node_id in self.raw:
                raise import_error(f"node id {node_id} is used twice", self.source, f"nodes[{i}]")
            self.raw[node_id] = raw
        self._read_links()
        self._read_native_reroutes()

        graph = Graph()
        for node_id, raw in self.raw.items():
            if raw["type"] in (REROUTE, PRIMITIVE):
                continue
            graph.add(self._node(node_id, raw))
        for node_id, raw in self.raw.items():
            if raw["type"] not in (REROUTE, PRIMITIVE):
                self._inputs_of(graph, graph.nodes[node_id], raw)
        for prim_id, uses in self.primitive_uses.items():
            self._primitive(graph, self.raw[prim_id], uses)
        self._resolved_notes()
        self.report.notes.extend(prompt_notes(graph))
        graph.groups = self._groups()
        graph.meta["imported_from"] = f"ComfyUI workflow (UI format {self.report.version})"
        graph.revision = 0
        return graph, self.report

    def _read_links(self) -> None:
        raw_links = self.data.get("links") or []
        if not isinstance(raw_links, list):
            raise import_error("\"links\" must be a list", self.source, "links")
        for i, item in enumerate(raw_links):
            if item is None:  # old litegraph files keep nulls for deleted links
                continue
            try:
                if isinstance(item, list) and len(item) >= 5:
                    link = _Link(int(item[0]), str(item[1]), int(item[2]), str(item[3]), int(item[4]),
                                 item[5] if len(item) > 5 else None)
                elif isinstance(item, dict):
                    link = _Link(int(item["id"]), str(item["origin_id"]), int(item["origin_slot"]),
                                 str(item["target_id"]), int(item["target_slot"]), item.get("type"))
                    if item.get("parentId") is not None:
                        self.reroute_parent[link.id] = int(item["parentId"])
                else:
                    raise ValueError
            except (KeyError, TypeError, ValueError, OverflowError):
                raise import_error(f"links[{i}] is not a ComfyUI link", self.source, f"links[{i}]") from None
            self.links[link.id] = link

    def _read_native_reroutes(self) -> None:
        """The frontend's native reroutes (not nodes): points on links, chained by parent id."""
        extra = self.data.get("extra") if isinstance(self.data.get("extra"), dict) else {}
        for ext in _list(extra.get("linkExtensions")):
            if isinstance(ext, dict) and None not in (_int(ext.get("id")), _int(ext.get("parentId"))):
                self.reroute_parent[_int(ext["id"])] = _int(ext["parentId"])
        for r in _list(self.data.get("reroutes")) + _list(extra.get("reroutes")):
            rid = _int(r.get("id")) if isinstance(r, dict) else None
            if rid is None:
                continue
            pos = _pair(r.get("pos"))
            if pos is not None:
                self.reroute_pos[rid] = pos
            if _int(r.get("parentId")) is not None:
                self.reroute_chain[rid] = _int(r["parentId"])

    def _native_points(self, link_id: int) -> list[tuple[float, float]]:
        points: list[tuple[float, float]] = []
        rid = self.reroute_parent.get(link_id)
        seen: set[int] = set()
        while rid is not None and rid not in seen:
            seen.add(rid)
            if rid in self.reroute_pos:
                points.insert(0, self.reroute_pos[rid])
            rid = self.reroute_chain.get(rid)
        return points

    # -- nodes -----------------------------------------------------------------------------
    def _node(self, node_id: str, raw: dict[str, Any]) -> Node:
        class_type = raw["type"]
        mode_num = raw.get("mode", 0)
        mode = MODES.get(mode_num, "normal") if type(mode_num) is int else "normal"
        if type(mode_num) is not int or mode_num not in MODES:
            self.note(f"node {node_id} ({class_type}): mode {mode_num!r} has no equivalent here; "
                      "the node is imported as a normal node")
        fields: dict[str, Any] = {"pos": _pair(raw.get("pos")) or (0.0, 0.0),
                                  "size": _pair(raw.get("size")),
                                  "title": raw["title"] if isinstance(raw.get("title"), str) else None,
                                  "color": raw["color"] if isinstance(raw.get("color"), str) else None}
        look = {k: raw[k] for k in ("bgcolor", "shape") if raw.get(k) is not None}
        if isinstance(raw.get("flags"), dict) and raw["flags"]:
            look["flags"] = raw["flags"]
        spec = mapped_spec(self.specs, class_type)
        if spec is None:
            kept: dict[str, Any] = dict(look)
            kept.update({
                "widgets_values": raw.get("widgets_values"),
                "inputs": [_socket(s) for s in _list(raw.get("inputs")) if isinstance(s, dict)],
                "outputs": [_socket(s) for s in _list(raw.get("outputs")) if isinstance(s, dict)],
            })
            if raw.get("properties"):
                kept["properties"] = raw["properties"]
            if class_type in self.subgraphs:
                kept["subgraph"] = self.subgraphs[class_type]
            if mode_num == BYPASS:
                kept["mode"] = BYPASS
                mode = "muted"
                self.note(f"node {node_id} ({class_type}) is bypassed and unknown here: its consumers "
                          "were wired to its matching inputs, as ComfyUI does, and the node is muted")
            self.report.unknown[class_type] += 1
            return make_placeholder(node_id, class_type, kept, mode=mode, **fields)
        params, control, kept_inputs, leftover = self._widgets(node_id, spec, raw.get("widgets_values"))
        node = Node(node_id, class_type, params, mode=mode, control_after_run=control, **fields)
        kept = dict(look)
        if kept_inputs:
            kept["inputs"] = kept_inputs
        if leftover:
            kept["widgets_values"] = leftover
        if kept:
            node.extra[COMFY_KEY] = kept
        return node

    def _widgets(self, node_id: str, spec: NodeSpec, values: Any
                 ) -> tuple[dict[str, Any], dict[str, str], dict[str, Any], list[Any]]:
        """Map ``widgets_values`` onto the spec's params, in order (see the module docstring).
        Returns params, control modes, values of ComfyUI inputs we do not have, and values left
        over (a workflow from a ComfyUI version whose node had more widgets)."""
        where = f"node {node_id} ({spec.type_id})"
        params: dict[str, Any] = {}
        control: dict[str, str] = {}
        kept: dict[str, Any] = {}
        if isinstance(values, dict):  # newer nodes may store their widgets by name
            for name, value in values.items():
                if spec.param(name) is not None:
                    params[name] = import_value(spec.type_id, name, value)
                else:
                    kept[name] = value
            return params, control, kept, []
        values = list(values) if isinstance(values, list) else []
        i = 0
        missing = []
        for p in spec.params:
            if i >= len(values):
                missing.append(p.name)
                continue
            params[p.name] = import_value(spec.type_id, p.name, values[i])
            i += 1
            if takes_control_value(p) and i < len(values) and values[i] in CONTROL_VALUES:
                if p.control_after_run is not None:
                    control[p.name] = control_mode(values[i])
                i += 1
        rest = values[i:]
        names = EXTRA_WIDGETS.get(spec.type_id, ())
        kept.update(zip(names, rest))
        leftover = rest[len(names):]
        if missing and values:
            self.note(f"{where}: the workflow has no value for {', '.join(missing)}; "
                      "the default is used")
        if leftover:
            self.note(f"{where}: {len(leftover)} widget value(s) beyond the params NodeGraph knows "
                      f"are kept with the node but not used: {_short(leftover)}")
        return params, control, kept, leftover

    # -- links -----------------------------------------------------------------------------
    def _inputs_of(self, graph: Graph, node: Node, raw: dict[str, Any]) -> None:
        spec = mapped_spec(self.specs, node.type)
        for slot, inp in enumerate(_list(raw.get("inputs"))):
            if not isinstance(inp, dict) or inp.get("link") is None:
                continue
            name = inp.get("name")
            where = f"node {node.id} ({node.type}) input {name!r}"
            if not isinstance(name, str) or not name:
                self.note(f"node {node.id} ({node.type}): input slot {slot} has no name; its link is "
                          "left out")
                continue
            link = self.links.get(_int(inp["link"]))
            if link is None:
                self.note(f"{where}: link {inp['link']} is not in the workflow's links; left unconnected")
                continue
            points = self._native_points(link.id)
            found = self._trace(link, inp.get("type"), points)
            if found is None:
                self.note(f"{where}: the Reroute/bypassed chain it comes through has no source; "
                          "left unconnected")
                continue
            origin = self.raw.get(found.origin)
            if origin is not None and origin["type"] == PRIMITIVE:
                self.primitive_uses.setdefault(found.origin, []).append((node, spec, name, points))
                continue
            if not found.origin:
                self.note(f"{where}: its link comes from an empty node id; left unconnected")
                continue
            output = self._output_name(found.origin, found.origin_slot)
            extra = {"reroutes": [[round(x), round(y)] for x, y in points]} if points else {}
            graph.add_link(Link(found.origin, output, node.id, name, extra))

    def _trace(self, link: _Link, want: Any, points: list[tuple[float, float]]) -> _Link | None:
        """The link that really feeds an input: through Reroute nodes and bypassed placeholders
        (``points`` collects the reroutes' positions, origin first)."""
        seen: set[str] = set()
        while True:
            origin = self.raw.get(link.origin)
            if origin is None:
                return link  # a missing node: validation names it
            if link.origin in seen:
                return None  # a loop of reroutes
            seen.add(link.origin)
            if origin["type"] == REROUTE:
                pos, size = _pair(origin.get("pos")), _pair(origin.get("size"))
                if pos is not None:
                    w, h = size or (0.0, 0.0)
                    points.insert(0, (pos[0] + w / 2, pos[1] + h / 2))
                nxt = self._input_link(origin, 0)
            elif origin.get("mode") == BYPASS and mapped_spec(self.specs, origin["type"]) is None:
                nxt = self._bypass_source(origin, link.origin_slot, want)
            else:
                return link
            if nxt is None:
                return None
            points[:0] = self._native_points(nxt.id)
            link = nxt

    def _input_link(self, raw: dict[str, Any], slot: int) -> _Link | None:
        inputs = _list(raw.get("inputs"))
        inp = inputs[slot] if 0 <= slot < len(inputs) else None
        if not isinstance(inp, dict) or inp.get("link") is None:
            return None
        return self.links.get(_int(inp["link"]))

    def _bypass_source(self, raw: dict[str, Any], slot: int, want: Any) -> _Link | None:
        """ComfyUI's rule for a bypassed node: the input at the output's slot index if its type is
        the one wanted, else the first input of that type."""
        inputs = _list(raw.get("inputs"))
        order = ([slot] if 0 <= slot < len(inputs) else []) + list(range(len(inputs)))
        for i in order:
            if isinstance(inputs[i], dict) and inputs[i].get("type") == want:
                return self._input_link(raw, i)
        return None

    def _primitive(self, graph: Graph, primitive: dict[str, Any],
                   uses: list[tuple[Node, NodeSpec | None, str, list]]) -> None:
        """A PrimitiveNode: kept as a primitive node linked into the params it feeds when it feeds
        several params of one kind, else its value written into each of them."""
        type_id = _primitive_type([spec.param(name) if spec is not None else None
                                   for _node, spec, name, _points in uses])
        values = primitive.get("widgets_values")
        if len(uses) < 2 or type_id is None or self.specs.get(type_id) is None or not (
                isinstance(values, list) and values):
            for node, spec, name, _points in uses:
                self._primitive_value(node, spec, name, primitive)
            return
        first, _spec, first_name, _ = uses[0]
        params, control = {"value": import_value(first.type, first_name, values[0])}, {}
        if type_id == "PrimitiveInt" and len(values) > 1 and values[1] in CONTROL_VALUES:
            control["value"] = control_mode(values[1])
        node = Node(str(primitive["id"]), type_id, params, control_after_run=control,
                    pos=_pair(primitive.get("pos")) or (0.0, 0.0), size=_pair(primitive.get("size")),
                    title=primitive["title"] if isinstance(primitive.get("title"), str) else None)
        graph.add(node)
        output = self.specs[type_id].outputs[0].name
        for target, _spec, name, points in uses:
            extra = {"reroutes": [[round(x), round(y)] for x, y in points]} if points else {}
            graph.add_link(Link(node.id, output, target.id, name, extra))
        self.primitives_kept += 1

    def _primitive_value(self, node: Node, spec: NodeSpec | None, name: str,
                         primitive: dict[str, Any]) -> None:
        values = primitive.get("widgets_values")
        if not isinstance(values, list) or not values:
            self.note(f"node {node.id} ({node.type}) input {name!r}: its PrimitiveNode "
                      f"{primitive['id']} holds no value; left unconnected")
            return
        self.primitives_resolved += 1
        value = import_value(node.type, name, values[0])
        param = spec.param(name) if spec is not None else None
        if spec is not None and param is None:
            node.extra.setdefault(COMFY_KEY, {}).setdefault("inputs", {})[name] = values[0]
            return
        node.params[name] = value
        if (param is not None and param.control_after_run is not None and len(values) > 1
                and values[1] in CONTROL_VALUES):
            node.control_after_run[name] = control_mode(values[1])

    def _output_name(self, node_id: str, slot: int) -> str:
        raw = self.raw.get(node_id)
        spec = mapped_spec(self.specs, raw["type"]) if raw is not None else None
        if spec is not None and 0 <= slot < len(spec.outputs):
            return spec.outputs[slot].name
        outputs = _list((raw or {}).get("outputs"))
        if 0 <= slot < len(outputs) and isinstance(outputs[slot], dict) and outputs[slot].get("name"):
            return str(outputs[slot]["name"])
        return f"output_{slot}"

    def _resolved_notes(self) -> None:
        reroutes = sum(1 for r in self.raw.values() if r["type"] == REROUTE)
        primitives = [r for r in self.raw.values() if r["type"] == PRIMITIVE]
        if reroutes:
            self.note(f"{reroutes} Reroute node(s) became reroute points on the links they carried")
        folded = len(primitives) - self.primitives_kept
        if folded:
            self.note(f"{folded} PrimitiveNode(s) were written into the params they fed "
                      f"({self.primitives_resolved} param(s))")
        if self.primitives_kept:
            self.note(f"{self.primitives_kept} PrimitiveNode(s) feeding several params became "
                      "primitive nodes (Int, Float, String, Boolean) linked into them")

    # -- groups ----------------------------------------------------------------------------
    def _groups(self) -> list[Group]:
        groups = []
        for i, raw in enumerate(_list(self.data.get("groups"))):
            rect = raw.get("bounding") if isinstance(raw, dict) else None
            if not (isinstance(rect, list) and len(rect) == 4 and all(_is_num(v) for v in rect)):
                self.note(f"groups[{i}] has no [x, y, width, height] bounding; left out")
                continue
            title = raw.get("title") if isinstance(raw.get("title"), str) else ""
            color = raw.get("color") if isinstance(raw.get("color"), str) else None
            extra = {"font_size": raw["font_size"]} if raw.get("font_size") not in (None, 24) else {}
            groups.append(Group(title, tuple(float(v) for v in rect), color, extra))
        return groups


def _primitive_type(params: list[Any]) -> str | None:
    """Our primitive node type for a PrimitiveNode feeding ``params`` (None: they are not all
    params of one kind, e.g. an input of a placeholder)."""
    kinds = {(p.kind, p.multiline) if p is not None else None for p in params}
    if len(kinds) != 1 or None in kinds:
        return None
    kind, multiline = kinds.pop()
    if kind == STRING and multiline:
        return "PrimitiveStringMultiline"
    return {INT: "PrimitiveInt", FLOAT: "PrimitiveFloat", BOOLEAN: "PrimitiveBoolean", STRING: "PrimitiveString",
            COMBO: "PrimitiveString"}.get(kind)


def _socket(raw: dict[str, Any]) -> dict[str, Any]:
    """A placeholder's socket as kept: name, type, and the widget it stands for (no link ids)."""
    out = {k: raw[k] for k in ("name", "type", "label") if k in raw}
    if isinstance(raw.get("widget"), dict):
        out["widget"] = raw["widget"].get("name")
    return out


def _is_num(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _pair(v: Any) -> tuple[float, float] | None:
    """ComfyUI positions and sizes: ``[x, y]``, or ``{"0": x, "1": y}`` in some older files."""
    if isinstance(v, dict):
        v = [v.get("0", v.get(0)), v.get("1", v.get(1))]
    if isinstance(v, (list, tuple)) and len(v) >= 2 and _is_num(v[0]) and _is_num(v[1]):
        return (v[0], v[1])
    return None


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        return None


def _list(v: Any) -> list[Any]:
    """A list field, or nothing when the field holds something else."""
    return v if isinstance(v, list) else []


def _short(values: list[Any], limit: int = 60) -> str:
    text = ", ".join(repr(v) for v in values)
    return text if len(text) <= limit else text[: limit - 3] + "..."
