"""ComfyUI's JSON shapes built from NodeGraph's objects: node info (``/object_info``), queue entries
(``/queue``), history entries (``/history``), image records and the run messages they share with the
websocket. Facts about the shapes come from ComfyUI's ``server.py`` and ``execution.py``."""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..comfy.api_format import to_api_prompt
from ..context import RunOptions
from ..graph import Graph
from ..history import HistoryEntry
from ..queue import QueueItem
from ..registry import BOOLEAN, COMBO, FLOAT, INT, STRING, InputSpec, NodeSpec, ParamSpec, Registry

BIG_LIST = 20
"""ComfyUI leaves the choices out of a ``value_not_in_list`` error above this many."""


def servable(spec: NodeSpec) -> bool:
    """Whether prompts may use this node type: ComfyUI's prompts name types by bare ids, which
    NodeGraph gives its built-in nodes (a pack's ids have a dot and do not map); nodes that do
    nothing when run (notes) are the frontend's business in ComfyUI, not the server's."""
    return "." not in spec.type_id and bool(spec.outputs or spec.output_node)


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def now_ms() -> int:
    return ms(time.time())


def number_json(number: float) -> float | int:
    """A queue number as ComfyUI shows it (whole numbers as integers)."""
    return int(number) if float(number).is_integer() else number


# -- /object_info ---------------------------------------------------------------------------------
def node_info(spec: NodeSpec, options: RunOptions | None, memo: dict[int, tuple[Any, ...]]) -> dict[str, Any]:
    """One node type in ComfyUI's ``/object_info`` schema (``memo`` shares resolved choices)."""
    required: dict[str, Any] = {}
    optional: dict[str, Any] = {}
    for inp in spec.inputs:
        (optional if inp.optional else required)[inp.name] = input_config(inp)
    for param in spec.params:
        required[param.name] = param_config(param, options, memo)
    return {
        "input": {"required": required, "optional": optional} if optional else {"required": required},
        "input_order": {"required": list(required), **({"optional": list(optional)} if optional else {})},
        "output": [o.type for o in spec.outputs],
        "output_is_list": [False] * len(spec.outputs),
        "output_name": [o.name for o in spec.outputs],
        "output_tooltips": [o.description for o in spec.outputs],
        "name": spec.type_id,
        "display_name": spec.display_name,
        "description": spec.description,
        "python_module": "nodes" if not spec.pack or spec.pack == "builtin" else f"custom_nodes.{spec.pack}",
        "category": spec.category,
        "output_node": spec.output_node,
        "deprecated": False,
        "experimental": False,
        "api_node": False,
    }


def input_config(inp: InputSpec) -> list[Any]:
    return [inp.type, {"tooltip": inp.description}] if inp.description else [inp.type]


def choices_of(param: ParamSpec, options: RunOptions | None, memo: dict[int, tuple[Any, ...]]) -> tuple[Any, ...]:
    """A COMBO param's current choices (a failing provider gives none), resolved once per ``memo``."""
    got = memo.get(id(param))
    if got is None:
        try:
            got = param.resolve_choices(options)
        except Exception:
            got = ()
        memo[id(param)] = got
    return got


def param_config(param: ParamSpec, options: RunOptions | None,
                 memo: dict[int, tuple[Any, ...]]) -> list[Any]:
    """A widget's ``[TYPE or [choices], {default, min, max, step, ...}]``."""
    extra: dict[str, Any] = {}
    if param.kind == COMBO:
        choices = list(choices_of(param, options, memo))
        if param.default in choices:
            extra["default"] = param.default
    else:
        extra["default"] = param.default
    for key in ("min", "max", "step"):
        value = getattr(param, key)
        if value is not None:
            extra[key] = value
    if param.kind == STRING:
        extra["multiline"] = param.multiline
    if param.control_after_run is not None:
        extra["control_after_generate"] = True
    if param.description:
        extra["tooltip"] = param.description
    return [choices if param.kind == COMBO else param.kind, extra]


def object_info(registry: Registry, options: RunOptions | None,
                only: str | None = None) -> dict[str, Any]:
    memo: dict[int, tuple[Any, ...]] = {}
    specs = [s for s in registry.nodes.values() if servable(s) and (only is None or s.type_id == only)]
    return {s.type_id: node_info(s, options, memo) for s in sorted(specs, key=lambda s: s.type_id)}


# -- files ----------------------------------------------------------------------------------------
def file_record(path: str | Path, folders: Sequence[tuple[str, Path]]) -> dict[str, str] | None:
    """``{"filename", "subfolder", "type"}`` of a file inside one of the served folders, else None."""
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    for kind, root in folders:
        try:
            rel = real.relative_to(root)
        except ValueError:
            continue
        sub = rel.parent.as_posix()
        return {"filename": rel.name, "subfolder": "" if sub == "." else sub, "type": kind}
    return None


def is_output_node(graph: Graph, registry: Registry, node_id: str) -> bool:
    """Whether a node of ``graph`` is an output node: only those report ``executed`` outputs, as in
    ComfyUI (other nodes' ``ui`` is for NodeGraph's own run summary: precision, model files)."""
    node = graph.nodes.get(node_id)
    spec = registry.get(node.type) if node is not None else None
    return spec is not None and spec.output_node


def ui_output(ui: dict[str, Any], folders: Sequence[tuple[str, Path]]) -> dict[str, Any]:
    """What an output node showed, as ComfyUI's ``output`` of an ``executed`` message: ``images`` become
    image records (files outside the served folders are left out); ``files`` (paths on this machine)
    are not sent; any other value is sent as a list."""
    out: dict[str, Any] = {}
    for key, value in ui.items():
        if key == "files":
            continue
        if key == "images":
            records = [r for p in value if (r := file_record(p, folders)) is not None]
            if records:
                out["images"] = records
            continue
        out[key] = list(value) if isinstance(value, (list, tuple)) else [value]
    return out


def node_meta(node_id: str) -> dict[str, Any]:
    return {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}


# -- queue and history ----------------------------------------------------------------------------
def comfy_part(extra: dict[str, Any]) -> dict[str, Any]:
    part = extra.get("comfy")
    return part if isinstance(part, dict) else {}


def queue_entry(item: QueueItem | HistoryEntry, registry: Registry) -> list[Any]:
    """ComfyUI's queue tuple ``[number, prompt_id, prompt, extra_data, outputs_to_execute]``. Items
    queued by other clients (the editor) show their graph exported to the API format."""
    part = comfy_part(item.extra)
    prompt = part.get("prompt")
    if prompt is None:
        prompt = to_api_prompt(item.graph, registry.nodes)
    outputs = part.get("outputs_to_execute")
    if outputs is None:
        outputs = list(item.targets) if item.targets is not None else [
            nid for nid, n in item.graph.nodes.items()
            if n.mode == "normal" and (s := registry.get(n.type)) is not None and s.output_node]
    return [number_json(item.number), item.id, prompt, dict(part.get("extra_data") or {}), list(outputs)]


def final_message(entry: HistoryEntry) -> tuple[str, dict[str, Any]]:
    """The last of a run's messages: execution_success, execution_error or execution_interrupted."""
    base = {"prompt_id": entry.id, "timestamp": ms(entry.finished_at)}
    if entry.status == "success":
        return "execution_success", base
    error = entry.error or {}
    node_id = error.get("node_id")
    data = {"prompt_id": entry.id, "node_id": node_id, "node_type": error.get("node_type"),
            "executed": list(entry.executed) + list(entry.cached), "timestamp": base["timestamp"]}
    if entry.status == "interrupted":
        return "execution_interrupted", data
    data.update({
        "exception_message": error.get("message", ""),
        "exception_type": error.get("exception_type", ""),
        "traceback": str(error.get("traceback") or "").splitlines(keepends=True),
        "current_inputs": current_inputs(entry, node_id),
        "current_outputs": {},
    })
    return "execution_error", data


def current_inputs(entry: HistoryEntry, node_id: str | None) -> dict[str, list[Any]]:
    """The failing node's params as ComfyUI formats them (``{name: [value]}``), links as text."""
    node = entry.graph.nodes.get(node_id) if node_id is not None else None
    if node is None:
        return {}
    out: dict[str, list[Any]] = {name: [_plain(v)] for name, v in sorted(node.params.items())}
    for name, link in entry.graph.inputs_of(node.id).items():
        out[name] = [f"output {link.output} of node {link.src}"]
    return out


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def history_messages(entry: HistoryEntry) -> list[list[Any]]:
    start = ms(entry.started_at)
    return [["execution_start", {"prompt_id": entry.id, "timestamp": start}],
            ["execution_cached", {"nodes": list(entry.cached), "prompt_id": entry.id, "timestamp": start}],
            list(final_message(entry))]


def history_item(entry: HistoryEntry, registry: Registry,
                 folders: Sequence[tuple[str, Path]]) -> dict[str, Any]:
    """One entry of ComfyUI's ``/history``: prompt tuple, outputs, status, meta."""
    outputs = {nid: out for nid, ui in entry.outputs.items()
               if is_output_node(entry.graph, registry, nid) and (out := ui_output(ui, folders))}
    ok = entry.status == "success"
    return {
        "prompt": queue_entry(entry, registry),
        "outputs": outputs,
        "status": {"status_str": "success" if ok else "error", "completed": ok,
                   "messages": history_messages(entry)},
        "meta": {nid: node_meta(nid) for nid in outputs},
    }


def history(entries: Iterable[HistoryEntry], registry: Registry,
            folders: Sequence[tuple[str, Path]]) -> dict[str, Any]:
    return {e.id: history_item(e, registry, folders) for e in entries}


def input_kind(param: ParamSpec) -> str:
    """The ComfyUI type name of a param (COMBO for choices)."""
    return {INT: "INT", FLOAT: "FLOAT", STRING: "STRING", BOOLEAN: "BOOLEAN"}.get(param.kind, "COMBO")
