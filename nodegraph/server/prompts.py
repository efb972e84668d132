"""A ComfyUI API prompt checked as ComfyUI checks it, and turned into a graph to queue.

ComfyUI's rules (``execution.validate_prompt``): every node needs a known ``class_type``; widget
values are converted to the input's type (``int()``, ``float()``, ``str()``); only what the output
nodes depend on is checked; an output whose upstream has an error is dropped and the prompt runs
the others, and only when none is left is the prompt refused (``prompt_outputs_failed_validation``).
Problems are reported per node in ComfyUI's ``node_errors`` structure.

Over HTTP a value that names a file must be one the server lists: a model in its model folders, an
image in its input folders — never a path elsewhere on the machine.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..comfy.api_import import from_prompt, is_link
from ..context import RunOptions
from ..errors import GraphLoadError, Problem
from ..graph import Graph
from ..registry import BOOLEAN, COMBO, FLOAT, INT, STRING, NodeSpec, ParamSpec, Registry
from ..validate import validate
from .shapes import BIG_LIST, choices_of, input_config, input_kind, param_config, servable

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")

ERROR_TYPES: dict[str, tuple[str, str]] = {
    "missing_input": ("required_input_missing", "Required input is missing"),
    "type_mismatch": ("return_type_mismatch", "Return type mismatch between linked nodes"),
    "missing_output": ("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]"),
    "missing_node": ("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]"),
    "unknown_input": ("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]"),
    "wrong_kind": ("invalid_input_type", "Failed to convert an input value to a {kind} value"),
    "below_min": ("value_smaller_than_min", "Value {value} smaller than min of {min}"),
    "above_max": ("value_bigger_than_max", "Value {value} bigger than max of {max}"),
    "bad_choice": ("value_not_in_list", "Value not in list"),
    "not_multiple": ("custom_validation_failed", "Custom validation failed for node"),
    "choices_failed": ("exception_during_validation", "Exception when validating node"),
    "cycle": ("dependency_cycle", "Dependency cycle detected"),
}
"""Our problem codes → ComfyUI's error ``type`` and its generic ``message`` (``details`` is ours)."""


class PromptRefused(Exception):
    """The prompt cannot run: ``error`` and ``node_errors`` are the 400 response's body."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any] | None = None):
        super().__init__(error.get("message", "invalid prompt"))
        self.error = error
        self.node_errors = node_errors or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "node_errors": self.node_errors}


@dataclass
class Checked:
    """A prompt that may run: its graph, the outputs that will run, errors of the dropped ones."""

    graph: Graph
    outputs: list[str]
    node_errors: dict[str, Any]


def refusal(kind: str, message: str, details: str = "", **extra_info: Any) -> PromptRefused:
    return PromptRefused({"type": kind, "message": message, "details": details, "extra_info": extra_info})


def check_prompt(prompt: Any, registry: Registry, options: RunOptions,
                 partial_targets: list[str] | None = None) -> Checked:
    """The graph to run and the outputs to run for ``prompt``; PromptRefused when nothing can run."""
    if not isinstance(prompt, dict) or not prompt:
        raise refusal("invalid_prompt", "The prompt must be an object mapping node ids to "
                      "{\"class_type\": ..., \"inputs\": {...}}", "")
    specs = _specs_of(prompt, registry)
    outputs = [nid for nid, spec in specs.items() if spec.output_node
               and (partial_targets is None or nid in partial_targets)]
    if not outputs:
        raise refusal("prompt_no_outputs", "Prompt has no outputs", "")
    prompt, conversion_errors = _convert_values(prompt, specs)
    try:
        graph, _report = from_prompt(prompt, registry.nodes)
    except GraphLoadError as exc:
        raise refusal("invalid_prompt", str(exc), str(exc)) from None
    problems = [p for p in validate(graph, registry, options) if p.severity == "error"]
    problems += listed_only(graph, registry, options, problems)
    bad = node_problems(graph, registry, problems, conversion_errors, options)
    good, node_errors = _split_outputs(graph, outputs, bad, specs)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for v in node_errors.values() for e in v["errors"])
        raise PromptRefused({"type": "prompt_outputs_failed_validation",
                             "message": "Prompt outputs failed validation", "details": details,
                             "extra_info": {}}, node_errors)
    return Checked(graph, good, node_errors)


def _specs_of(prompt: dict[str, Any], registry: Registry) -> dict[str, NodeSpec]:
    specs: dict[str, NodeSpec] = {}
    for node_id, entry in prompt.items():
        meta = entry.get("_meta") if isinstance(entry, dict) else None
        title = meta.get("title") if isinstance(meta, dict) else None
        class_type = entry.get("class_type") if isinstance(entry, dict) else None
        if not isinstance(class_type, str) or not class_type:
            raise refusal("missing_node_type", f"Node '{title or f'ID #{node_id}'}' has no class_type. "
                          "The workflow may be corrupted or a custom node is missing.",
                          f"Node ID '#{node_id}'", node_id=node_id, class_type=None, node_title=title)
        spec = registry.get(class_type)
        if spec is None or not servable(spec):
            raise refusal("missing_node_type", f"Node '{title or class_type}' not found. NodeGraph has no "
                          f"node type {class_type!r} (see GET /object_info for the ones it has).",
                          f"Node ID '#{node_id}'", node_id=node_id, class_type=class_type,
                          node_title=title or class_type)
        specs[str(node_id)] = spec
    return specs


# -- value conversion (ComfyUI converts widget values to the input's type) ------------------------
def _convert_values(prompt: dict[str, Any], specs: dict[str, NodeSpec]
                    ) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """A copy of the prompt with widget values converted as ComfyUI converts them, and the
    ``invalid_input_type`` errors of values that do not convert."""
    out: dict[str, Any] = {}
    errors: dict[str, list[dict[str, Any]]] = {}
    for node_id, entry in prompt.items():
        spec = specs[str(node_id)]
        inputs = entry.get("inputs") if isinstance(entry.get("inputs"), dict) else {}
        converted = {}
        for name, value in inputs.items():
            param = spec.param(name)
            if param is not None and not is_link(value):
                try:
                    value = convert(param, value)
                except (TypeError, ValueError, OverflowError) as exc:
                    errors.setdefault(str(node_id), []).append(_error(
                        "invalid_input_type", f"Failed to convert an input value to a {input_kind(param)} value",
                        f"{name}, {value!r}, {exc}", name, param_config(param, None, {}), value))
                    continue
            converted[name] = value
        out[node_id] = {**entry, "inputs": converted}
    return out, errors


def convert(param: ParamSpec, value: Any) -> Any:
    """A widget value converted to the param's kind the way ComfyUI does (``int()``, ``float()``,
    ``str()``); booleans also read "true"/"false". Choices stay as they are."""
    if param.kind == INT and type(value) is not int:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("not a finite number")
        return int(value)
    if param.kind == FLOAT and type(value) not in (int, float):
        return float(value)
    if param.kind == STRING and not isinstance(value, str):
        if isinstance(value, (dict, list)):
            raise TypeError("an object or list is not text")
        return str(value)
    if param.kind == BOOLEAN and type(value) is not bool:
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if type(value) in (int, float):
            return bool(value)
        raise ValueError(f"{value!r} is not true or false")
    return value


# -- only listed files ----------------------------------------------------------------------------
def listed_only(graph: Graph, registry: Registry, options: RunOptions,
                already: list[Problem]) -> list[Problem]:
    """``bad_choice`` problems for choice values that are not listed, although the node itself
    would accept them (a model file or an image given by a path elsewhere): over HTTP a file must
    be one the server lists. A value written with ``\\`` for ``/`` is set to the listed name."""
    flagged = {(p.node_id, p.field) for p in already}
    memo: dict[int, tuple[Any, ...]] = {}
    found = []
    for node in graph.nodes.values():
        spec = registry.get(node.type)
        if spec is None or node.mode != "normal":
            continue
        linked = graph.inputs_of(node.id)
        for p in spec.params:
            if p.kind != COMBO or p.name in linked or p.name not in node.params:
                continue
            if (node.id, f"param {p.name}") in flagged:
                continue
            value = node.params[p.name]
            choices = choices_of(p, options, memo)
            if _listed(value, choices):
                continue
            if isinstance(value, str) and value.replace("\\", "/") in choices:
                graph.set_param(node, p.name, value.replace("\\", "/"))
                continue
            found.append(Problem("bad_choice", f"{value!r} is not one of the {len(choices)} listed "
                                 "choices; over HTTP a file must be one the server lists in its "
                                 "folders (see GET /object_info)", node.id, node.type, f"param {p.name}"))
    return found


def _listed(value: Any, choices: tuple[Any, ...]) -> bool:
    try:
        return value in choices
    except TypeError:
        return False


# -- node_errors ----------------------------------------------------------------------------------
def node_problems(graph: Graph, registry: Registry, problems: list[Problem],
                  conversion: dict[str, list[dict[str, Any]]], options: RunOptions
                  ) -> dict[str, list[dict[str, Any]]]:
    """ComfyUI error dicts by node id: conversion errors first, then the validation problems."""
    out = {nid: list(errs) for nid, errs in conversion.items()}
    for p in problems:
        if p.node_id is None or p.node_id not in graph.nodes:
            continue
        out.setdefault(p.node_id, []).append(comfy_error(p, graph, registry, options))
    return out


def comfy_error(p: Problem, graph: Graph, registry: Registry, options: RunOptions) -> dict[str, Any]:
    """One problem as ComfyUI's ``{"type", "message", "details", "extra_info"}``."""
    kind, message = ERROR_TYPES.get(p.code, ("custom_validation_failed", "Custom validation failed for node"))
    node = graph.nodes[p.node_id]
    spec = registry.get(node.type)
    name = p.param or p.input or ""
    param = spec.param(name) if spec is not None and name else None
    inp = spec.input(name) if spec is not None and name else None
    config: Any = None
    value: Any = node.params.get(name) if param is not None else None
    if param is not None:
        config = param_config(param, options, {})
        if param.kind == COMBO and len(config[0]) > BIG_LIST:
            config = None
        message = message.format(kind=input_kind(param), value=value, min=param.min, max=param.max)
    elif inp is not None:
        config = input_config(inp)
        link = graph.inputs_of(node.id).get(name)
        if link is not None:
            value = [link.src, link.output]
    return _error(kind, message, f"{name}: {p.message}" if name else p.message, name, config, value)


def _error(kind: str, message: str, details: str, name: str, config: Any, value: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"input_name": name} if name else {}
    if name:
        extra.update({"input_config": config, "received_value": value})
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def _split_outputs(graph: Graph, outputs: list[str], bad: Mapping[str, list[dict[str, Any]]],
                   specs: Mapping[str, NodeSpec]) -> tuple[list[str], dict[str, Any]]:
    """Outputs whose upstream is free of errors, and ComfyUI's ``node_errors`` of the others."""
    good: list[str] = []
    node_errors: dict[str, Any] = {}
    for out in outputs:
        broken = [nid for nid in upstream(graph, out) if bad.get(nid)]
        if not broken:
            good.append(out)
            continue
        for nid in broken:
            entry = node_errors.setdefault(nid, {"errors": bad[nid], "dependent_outputs": [],
                                                 "class_type": specs[nid].type_id})
            entry["dependent_outputs"].append(out)
    return good, node_errors


def upstream(graph: Graph, node_id: str) -> list[str]:
    """``node_id`` and every node it depends on through links (each once)."""
    seen: dict[str, None] = {}
    stack = [node_id]
    while stack:
        nid = stack.pop()
        if nid in seen or nid not in graph.nodes:
            continue
        seen[nid] = None
        stack.extend(link.src for link in graph.inputs_of(nid).values())
    return list(seen)
