"""The graph file: versioned JSON, deterministic output, unknown fields kept, migrations.

Version 1 (docs/graph-format.md, docs/graph.schema.json)::

    {"format": "nodegraph", "version": 1,
     "nodes": {"1": {"type": "...", "params": {...}, "pos": [x, y], ...}},
     "links": [{"from": "1", "output": "STRING", "to": "2", "input": "text"}],
     "groups": [{"title": "...", "rect": [x, y, w, h]}],
     "meta": {...}}

Reading never raises anything but :class:`~nodegraph.errors.GraphLoadError` (with every problem
found); writing sorts keys and uses a 2-space indent and a trailing newline, so files diff cleanly.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import GraphLoadError, Problem, UsageError
from .fileio import write_text_atomic
from .graph import NODE_MODES, Graph, Group, Link, Node
from .registry import CONTROL_MODES

FORMAT = "nodegraph"
VERSION = 1
PNG_CHUNK = "nodegraph"
"""Name of the PNG text chunk that holds a graph file (written by SaveImage)."""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMFY_CHUNKS = ("workflow", "prompt")
"""The image metadata keys ComfyUI stores its UI workflow and its API prompt under."""

_NODE_FIELDS = ("type", "params", "pos", "size", "title", "color", "mode", "control_after_run")
_LINK_FIELDS = ("from", "output", "to", "input")
_GROUP_FIELDS = ("title", "rect", "color")
_TOP_FIELDS = ("format", "version", "nodes", "links", "groups", "meta")

WEBP_MAGIC = (b"RIFF", b"WEBP")  # bytes 0-3 and 8-11 of a WebP file


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def _num_list(values: tuple[float, ...] | list[float]) -> list[float]:
    return list(values)


def to_data(graph: Graph) -> dict[str, Any]:
    """The graph as the JSON-ready dict that :func:`dumps` writes."""
    nodes: dict[str, Any] = {}
    for node in graph.nodes.values():
        d: dict[str, Any] = dict(node.extra)
        d["type"] = node.type
        d["params"] = dict(node.params)
        d["pos"] = _num_list(node.pos)
        if node.size is not None:
            d["size"] = _num_list(node.size)
        if node.title is not None:
            d["title"] = node.title
        if node.color is not None:
            d["color"] = node.color
        if node.mode != "normal":
            d["mode"] = node.mode
        if node.control_after_run:
            d["control_after_run"] = dict(node.control_after_run)
        nodes[node.id] = d
    links = []
    for link in graph.links:
        d = dict(link.extra)
        d.update({"from": link.src, "output": link.output, "to": link.dst, "input": link.input})
        links.append(d)
    groups = []
    for group in graph.groups:
        d = dict(group.extra)
        d["title"] = group.title
        d["rect"] = _num_list(group.rect)
        if group.color is not None:
            d["color"] = group.color
        groups.append(d)
    data: dict[str, Any] = dict(graph.extra)
    data.update({"format": FORMAT, "version": VERSION, "nodes": nodes, "links": links,
                 "groups": groups, "meta": graph.meta})
    return data


def dumps(graph: Graph) -> str:
    """The graph file text: sorted keys, 2-space indent, trailing newline."""
    try:
        text = json.dumps(to_data(graph), indent=2, sort_keys=True, ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the graph cannot be written as JSON: {exc}; params must be plain "
                         "JSON values (numbers, strings, booleans, lists, objects; no NaN)") from exc
    return escape_lone_surrogates(text) + "\n"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_lone_surrogates(text: str) -> str:
    """JSON text whose lone surrogates (valid in a JSON string, not in UTF-8) are written as ``\\uXXXX``
    escapes, so the file can be saved and reads back to the same value (validation then refuses it
    where it is used, naming the param)."""
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def save(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write the graph file atomically (temporary file in the same folder, then rename); a failure is
    a WriteError naming the path and saying what to do."""
    return write_text_atomic(path, dumps(graph), parents=True)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
class _DupDict(dict):  # type: ignore[type-arg]
    """A JSON object that had repeated keys (``duplicates`` lists them; the last value won)."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dups = []
        for k, _ in pairs:
            if k in seen:
                dups.append(k)
            seen.add(k)
        d = _DupDict(d)
        d.duplicates = dups
    return d


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a graph file (JSON has no {name})")


def parse_json(data: str | bytes, source: str | None = None) -> Any:
    """Parse JSON text, turning every failure into GraphLoadError with line and column."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise GraphLoadError([Problem("not_json", f"not UTF-8 text (bad byte at offset "
                                          f"{exc.start}); a graph file is UTF-8 JSON")], source) from None
    elif data.startswith("\ufeff"):
        data = data[1:]
    try:
        return json.loads(data, object_pairs_hook=_pairs_hook, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise GraphLoadError([Problem("not_json", f"not valid JSON at line {exc.lineno} column "
                                      f"{exc.colno}: {exc.msg}; was the file truncated or edited "
                                      "by hand?")], source) from None
    except ValueError as exc:
        raise GraphLoadError([Problem("not_json", str(exc))], source) from None
    except RecursionError:
        raise GraphLoadError([Problem("not_json", "the JSON is nested too deeply to read")],
                             source) from None


def _is_num(v: Any) -> bool:
    return type(v) in (int, float)


def _is_pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and _is_num(v[0]) and _is_num(v[1])


def _looks_like_comfyui(data: Any) -> bool:
    if isinstance(data, dict):
        if "last_node_id" in data or "last_link_id" in data:
            return True
        if data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
            return True
    return False


def from_data(data: Any, source: str | None = None) -> Graph:
    """Build a Graph from parsed JSON: check format and version, migrate, check every field."""
    if not isinstance(data, dict):
        raise GraphLoadError([Problem("bad_format", f"expected a JSON object at the top, got "
                                      f"{type(data).__name__}; this is not a NodeGraph file")], source)
    fmt = data.get("format")
    if fmt != FORMAT:
        if _looks_like_comfyui(data):
            msg = ("this looks like a ComfyUI workflow, not a NodeGraph file; open it with "
                   "`nodegraph.opening.open_graph` (as `nodegraph run` and `api.load` do), or "
                   "convert it with `nodegraph import-comfy`")
        elif fmt is None:
            msg = 'no "format" field; a NodeGraph file starts with {"format": "nodegraph", "version": 1'
        else:
            msg = f'"format" is {fmt!r}, expected "nodegraph"; this is not a NodeGraph file'
        raise GraphLoadError([Problem("bad_format", msg, field="format")], source)
    version = data.get("version")
    if type(version) is not int:
        msg = ('no "version" field' if "version" not in data
               else f'"version" must be an integer, got {json.dumps(version)[:40]}')
        raise GraphLoadError([Problem("bad_version", msg + f"; the current version is {VERSION}",
                                      field="version")], source)
    if version > VERSION:
        raise GraphLoadError([Problem(
            "bad_version", f"the file is version {version}, newer than this NodeGraph reads "
            f"(up to {VERSION}); upgrade NodeGraph to open it", field="version")], source)
    if version < min(MIGRATIONS, default=VERSION):
        raise GraphLoadError([Problem(
            "bad_version", f"version {version} is older than any version NodeGraph can migrate "
            f"(oldest: {min(MIGRATIONS, default=VERSION)})", field="version")], source)
    for v in range(version, VERSION):
        data = MIGRATIONS[v](data, source)
    return _parse_v1(data, source)


def _parse_v1(data: dict[str, Any], source: str | None) -> Graph:
    problems: list[Problem] = []

    def bad(message: str, node_id: str | None = None, field: str | None = None,
            code: str = "bad_field") -> None:
        problems.append(Problem(code, message, node_id=node_id, field=field))

    for key in getattr(data, "duplicates", ()):
        bad(f"the top-level field {key!r} appears twice", field=key, code="duplicate_key")
    graph = Graph(extra={k: v for k, v in data.items() if k not in _TOP_FIELDS})

    meta = data.get("meta", {})
    if isinstance(meta, dict):
        graph.meta = meta
    else:
        bad('"meta" must be an object', field="meta")

    nodes = data.get("nodes")
    if not isinstance(nodes, dict):
        bad('"nodes" must be an object mapping node ids to nodes'
            + ("" if "nodes" in data else ' (the field is missing)'), field="nodes")
        nodes = {}
    for node_id in getattr(nodes, "duplicates", ()):
        bad(f"node id {node_id!r} is used by more than one node; give each node its own id",
            node_id=node_id, code="duplicate_id")
    for node_id, raw in nodes.items():
        node = _parse_node(node_id, raw, bad)
        if node is not None:
            graph.add(node)

    links = data.get("links", [])
    if not isinstance(links, list):
        bad('"links" must be a list', field="links")
        links = []
    for i, raw in enumerate(links):
        where = f"links[{i}]"
        if not isinstance(raw, dict):
            bad("a link must be an object with from, output, to, input", field=where)
            continue
        vals = [raw.get(k) for k in _LINK_FIELDS]
        if not all(isinstance(v, str) and v for v in vals):
            missing = [k for k, v in zip(_LINK_FIELDS, vals) if not (isinstance(v, str) and v)]
            bad(f"{', '.join(missing)} must be non-empty strings", field=where)
            continue
        src, output, dst, input_name = vals
        if graph.link_into(dst, input_name) is not None:
            bad(f"input {input_name!r} of node {dst} has more than one link; keep one",
                node_id=dst, field=f"input {input_name}", code="duplicate_link")
            continue
        graph.add_link(Link(src, output, dst, input_name,
                            {k: v for k, v in raw.items() if k not in _LINK_FIELDS}))

    groups = data.get("groups", [])
    if not isinstance(groups, list):
        bad('"groups" must be a list', field="groups")
        groups = []
    for i, raw in enumerate(groups):
        where = f"groups[{i}]"
        if not isinstance(raw, dict):
            bad("a group must be an object with title and rect", field=where)
            continue
        title, rect, color = raw.get("title"), raw.get("rect"), raw.get("color")
        ok = True
        if not isinstance(title, str):
            bad("title must be a string", field=f"{where}.title")
            ok = False
        if not (isinstance(rect, list) and len(rect) == 4 and all(_is_num(v) for v in rect)):
            bad("rect must be [x, y, width, height]", field=f"{where}.rect")
            ok = False
        if color is not None and not isinstance(color, str):
            bad("color must be a string such as \"#335533\"", field=f"{where}.color")
            ok = False
        if ok:
            graph.groups.append(Group(title, tuple(rect), color,
                                      {k: v for k, v in raw.items() if k not in _GROUP_FIELDS}))
    if problems:
        raise GraphLoadError(problems, source)
    graph.revision = 0
    return graph


def _parse_node(node_id: str, raw: Any, bad: Callable[..., None]) -> Node | None:
    if not node_id:
        bad("node ids must be non-empty strings", field="nodes")
        return None
    if not isinstance(raw, dict):
        bad("a node must be an object with at least a \"type\"", node_id=node_id)
        return None
    ok = True
    for key in getattr(raw, "duplicates", ()):
        bad(f"field {key!r} appears twice", node_id=node_id, field=key, code="duplicate_key")
    type_id = raw.get("type")
    if not (isinstance(type_id, str) and type_id):
        bad("\"type\" must be a non-empty string naming the node type", node_id=node_id, field="type")
        ok = False
    params = raw.get("params", {})
    if not isinstance(params, dict):
        bad("\"params\" must be an object mapping param names to values", node_id=node_id,
            field="params")
        ok = False
    pos = raw.get("pos", [0, 0])
    if not _is_pair(pos):
        bad("\"pos\" must be [x, y]", node_id=node_id, field="pos")
        ok = False
    size = raw.get("size")
    if size is not None and not _is_pair(size):
        bad("\"size\" must be [width, height]", node_id=node_id, field="size")
        ok = False
    title, color = raw.get("title"), raw.get("color")
    for name, value in (("title", title), ("color", color)):
        if value is not None and not isinstance(value, str):
            bad(f"\"{name}\" must be a string", node_id=node_id, field=name)
            ok = False
    mode = raw.get("mode", "normal")
    if mode not in NODE_MODES:
        bad(f"\"mode\" must be one of {', '.join(NODE_MODES)}", node_id=node_id, field="mode")
        ok = False
    control = raw.get("control_after_run", {})
    if not (isinstance(control, dict)
            and all(isinstance(v, str) and v in CONTROL_MODES for v in control.values())):
        bad(f"\"control_after_run\" maps params to one of {', '.join(CONTROL_MODES)}",
            node_id=node_id, field="control_after_run")
        ok = False
    if not ok:
        return None
    return Node(node_id, type_id, params, tuple(pos), tuple(size) if size is not None else None,
                title, color, mode, dict(control),
                {k: v for k, v in raw.items() if k not in _NODE_FIELDS})


# --------------------------------------------------------------------------------------------
# migrations: MIGRATIONS[v] turns a version-v dict into a version-(v+1) dict
# --------------------------------------------------------------------------------------------
def _migrate_v0(data: dict[str, Any], source: str | None) -> dict[str, Any]:
    """Version 0 (the prototype's format) → 1.

    v0 kept nodes in a list with integer ids, positions as ``x``/``y``, and params and links mixed
    in one ``inputs`` object, where a link was ``{"node": id, "output": name}``.
    """
    problems: list[Problem] = []
    nodes_in = data.get("nodes")
    if not isinstance(nodes_in, list):
        raise GraphLoadError([Problem("bad_field", 'version 0: "nodes" must be a list',
                                      field="nodes")], source)
    nodes: dict[str, Any] = {}
    links: list[dict[str, Any]] = []
    for i, raw in enumerate(nodes_in):
        if not isinstance(raw, dict) or type(raw.get("id")) not in (int, str) or raw.get("id") == "":
            problems.append(Problem("bad_field", "version 0: each node needs an \"id\"",
                                    field=f"nodes[{i}]"))
            continue
        node_id = str(raw["id"])
        if node_id in nodes:
            problems.append(Problem("duplicate_id", f"node id {node_id!r} is used by more than one "
                                    "node; give each node its own id", node_id=node_id))
            continue
        x, y = raw.get("x", 0), raw.get("y", 0)
        if not (_is_num(x) and _is_num(y)):
            problems.append(Problem("bad_field", "version 0: x and y must be numbers",
                                    node_id=node_id, field="pos"))
            continue
        inputs = raw.get("inputs", {})
        if not isinstance(inputs, dict):
            problems.append(Problem("bad_field", "version 0: \"inputs\" must be an object",
                                    node_id=node_id, field="inputs"))
            continue
        params = {}
        for name, value in inputs.items():
            if isinstance(value, dict) and set(value) == {"node", "output"}:
                src, output = value["node"], value["output"]
                if type(src) not in (int, str) or not isinstance(output, str) or not output:
                    problems.append(Problem("bad_field", "version 0: a link is {\"node\": id, "
                                            "\"output\": name}", node_id=node_id,
                                            field=f"input {name}"))
                    continue
                links.append({"from": str(src), "output": output, "to": node_id, "input": name})
            else:
                params[name] = value
        node = {k: v for k, v in raw.items() if k not in ("id", "x", "y", "inputs")}
        node["params"] = params
        node["pos"] = [x, y]
        nodes[node_id] = node
    if problems:
        raise GraphLoadError(problems, source)
    out = {k: v for k, v in data.items() if k not in ("nodes", "version")}
    out.update({"version": 1, "nodes": nodes, "links": links})
    return out


MIGRATIONS: dict[int, Callable[[dict[str, Any], str | None], dict[str, Any]]] = {0: _migrate_v0}


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
def loads(data: str | bytes, source: str | None = None) -> Graph:
    """Read graph file text (or bytes). Raises GraphLoadError listing every problem."""
    return from_data(parse_json(data, source), source)


def is_image(head: bytes) -> bool:
    """Whether a file starting with ``head`` (at least 12 bytes) is a PNG or a WebP image."""
    return head.startswith(PNG_MAGIC) or (head[:4] == WEBP_MAGIC[0] and head[8:12] == WEBP_MAGIC[1])


def read_image_chunks(path: str | os.PathLike[str], names: tuple[str, ...]) -> dict[str, str]:
    """The text an image carries under ``names``: PNG text chunks (tEXt, zTXt, iTXt, also after the
    image data), and the EXIF entries of ComfyUI's WebP files, where SaveAnimatedWEBP stores
    ``"prompt:{json}"`` in tag 0x0110 (Model) and ``"workflow:{json}"`` in 0x010f (Make), further keys
    in 0x010e, 0x010d, ... Pillow is imported when needed; its errors (OSError, ValueError,
    DecompressionBombError, ...) are for the caller to turn into its own; the pixels are not read."""
    import warnings

    from PIL import Image

    found: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            text = {k: v for k, v in img.info.items() if isinstance(v, str)}
            if img.format == "PNG" and not any(k in text for k in names):
                text = dict(getattr(img, "text", {}))  # chunks after the image data need a full read
            for key in names:
                if key in text:
                    found[key] = str(text[key])
            for value in img.getexif().values():
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if isinstance(value, str) and ":" in value:
                    key, _, rest = value.partition(":")
                    if key in names and key not in found:
                        found[key] = rest.rstrip("\x00")
    return found


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a graph file (GraphLoadError ``not_found`` or ``unreadable`` naming it)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        code = "not_found" if isinstance(exc, FileNotFoundError) else "unreadable"
        raise GraphLoadError([Problem(code, f"cannot read the file: {exc.strerror or exc}")],
                             str(path)) from None


def image_chunks(path: str | os.PathLike[str],
                 names: tuple[str, ...] = (PNG_CHUNK, *COMFY_CHUNKS)) -> dict[str, str]:
    """:func:`read_image_chunks`, with every failure a GraphLoadError (``bad_png``) naming the file."""
    try:
        return read_image_chunks(path, names)
    except FileNotFoundError:
        raise GraphLoadError([Problem("not_found", "cannot read the file: no such file")],
                             str(path)) from None
    except Exception as exc:  # Pillow's errors: OSError, ValueError, SyntaxError, bombs, ...
        raise GraphLoadError([Problem("bad_png", f"cannot read it as an image ({exc}); is it a PNG "
                                      "or WebP file that NodeGraph or ComfyUI saved?")],
                             str(path)) from None


def load(path: str | os.PathLike[str]) -> Graph:
    """Read a graph file, or the graph embedded in a PNG or WebP that NodeGraph saved. ComfyUI's
    files are refused with a message: :func:`nodegraph.opening.open_graph` reads those too."""
    source = str(path)
    raw = read_file(path)
    if not is_image(raw[:12]):
        return loads(raw, source)
    chunks = image_chunks(path)
    if PNG_CHUNK in chunks:
        return loads(chunks[PNG_CHUNK], source)
    comfy = next((key for key in COMFY_CHUNKS if key in chunks), None)
    if comfy is not None:
        raise GraphLoadError([Problem("bad_format", f"the image carries a ComfyUI {comfy!r} chunk, "
                                      "not a NodeGraph graph; open it with `nodegraph run` or "
                                      "api.load, or convert it with `nodegraph import-comfy`")], source)
    raise GraphLoadError([Problem("no_graph", f"the image has no {PNG_CHUNK!r} text chunk: it was not "
                                  "saved by NodeGraph (or the metadata was stripped)")], source)
