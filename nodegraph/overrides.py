"""``NODE.PARAM=VALUE`` assignments (``--set``, ``--sweep``, :meth:`Session.set`): which node, which
param, and the value parsed by the param's kind."""
from __future__ import annotations

from typing import Any

from .errors import UsageError
from .graph import Graph, Node
from .registry import BOOLEAN, COMBO, FLOAT, INT, Registry

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_value(kind: str, text: str) -> Any:
    """Parse a command-line value for a param of ``kind`` (ValueError says what was expected)."""
    if kind == INT:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if kind == FLOAT:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if kind == BOOLEAN:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{text!r} is not true/false (also accepted: 1/0, yes/no, on/off)")
    return text  # STRING, COMBO


def parse_assignment(graph: Graph, registry: Registry, text: str, *,
                     option: str = "--set") -> tuple[Node, str, Any]:
    """Parse ``NODE.PARAM=VALUE`` against a graph: which node, which param, the typed value.
    ``option`` names the flag in error messages (``--sweep`` reuses this parser)."""
    key, sep, raw = text.partition("=")
    ref, dot, name = key.rpartition(".")
    if not sep or not dot or not ref or not name:
        raise UsageError(f"{option} {text!r}: write NODE.PARAM=VALUE, e.g. 3.seed=42 or "
                         "\"My Sampler.steps=30\"")
    try:
        node = graph.find(ref)
    except UsageError as exc:
        raise UsageError(f"{option} {text!r}: {exc}") from None
    spec = registry.get(node.type)
    if spec is None:
        raise UsageError(f"{option} {text!r}: {registry.unknown_type_message(node.type)}")
    param = spec.param(name)
    if param is None:
        raise UsageError(f"{option} {text!r}: node {node.label} has no param {name!r}; its params are "
                         + (", ".join(p.name for p in spec.params) or "none"))
    try:
        value = parse_value(param.kind, raw)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r}: {exc}") from None
    if param.kind == COMBO:
        choices = param.resolve_choices()
        if value not in choices:
            # Choices that are not strings (rare) are matched by their text.
            matched = [c for c in choices if str(c) == raw]
            if matched:
                value = matched[0]
    return node, name, value
