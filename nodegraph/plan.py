"""An execution plan: the nodes a run visits, in order, each with where its inputs come from.

Validation builds plans (:func:`nodegraph.validate.build_plan`: pruning to what the targets need,
order, cycles, missing nodes, inputs and outputs); the executor runs them and keeps them while the
graph's structure does not change. A :class:`Step` also remembers the last signature it computed
(see :meth:`Step.signature`), so that re-running an unchanged graph hashes nothing.

A node's *signature* is a hash of its type, its params (defaults filled in), the signatures of the
outputs feeding it, the run options that change results (device, dtype, model roots, extras; the
output folder for output nodes) and, if its spec declares one, its fingerprint.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from .context import RunOptions
from .graph import Graph, Node
from .registry import NodeSpec, Registry

Source = tuple[str, int]
"""Where a value comes from: (node id, output index)."""


class Step:
    """One node of a plan: its spec, where each input comes from and what the step may free.

    ``inputs`` are ``(input or param name, source node id, output index)``; ``passthrough`` (for a
    bypassed node) gives, per output, the source it passes on (None: nothing to pass); ``release``
    lists the sources whose values no later step needs. ``wiring`` is the part of the signature
    that only a structural edit changes (the spec's token and the wiring)."""

    __slots__ = ("inputs", "memo_fingerprint", "memo_params", "memo_signature", "memo_upstream",
                 "mode", "node", "node_id", "passthrough", "release", "sources", "spec", "wiring")

    def __init__(self, node: Node, spec: NodeSpec, inputs: list[tuple[str, str, int]],
                 passthrough: list[Source | None]):
        self.node_id = node.id
        self.node = node
        self.spec = spec
        self.mode = node.mode
        self.inputs = inputs
        self.sources = tuple(src for _, src, _ in inputs)
        self.passthrough = passthrough
        self.release: list[str] = []
        self.wiring = spec.token + "|" + repr([(name, index) for name, _, index in inputs])
        self.forget()

    def forget(self) -> None:
        """Drop the signature memo (the run options changed)."""
        self.memo_params: dict[str, Any] | None = None
        self.memo_upstream: tuple[str, ...] = ()
        self.memo_fingerprint: str | None = None
        self.memo_signature = ""

    def effective_params(self) -> dict[str, Any]:
        """The node's params with defaults filled in (what its function receives)."""
        params = self.node.params
        return {p.name: params.get(p.name, p.default) for p in self.spec.params}

    def signature(self, upstream: tuple[str, ...], fingerprint: str | None,
                  options_key: str) -> tuple[str, dict[str, Any] | None]:
        """This node's signature and, when it had to compute them, its effective params.

        ``upstream``: the signatures of the nodes feeding it, in ``inputs`` order. The last
        signature is reused while params, upstream signatures and fingerprint are unchanged."""
        params = self.node.params
        if (self.memo_params is not None and upstream == self.memo_upstream
                and fingerprint == self.memo_fingerprint and params == self.memo_params):
            return self.memo_signature, None
        effective = self.effective_params()
        signature = _hash(self.wiring, options_key, effective, upstream, fingerprint)
        self.memo_params = _snapshot(params)
        self.memo_upstream, self.memo_fingerprint, self.memo_signature = upstream, fingerprint, signature
        return signature, effective


class Plan:
    """The steps of a run in execution order, for one graph revision and one set of targets."""

    __slots__ = ("options_key", "revision", "steps", "targets")

    def __init__(self, revision: int, targets: tuple[str, ...], steps: list[Step]):
        self.revision = revision
        self.targets = targets
        self.steps = steps
        self.options_key: tuple[str, str] | None = None  # the options the step memos were made with
        _mark_releases(steps, set(targets))

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(step.node_id for step in self.steps)

    def use_options(self, key: tuple[str, str]) -> None:
        """Run with options whose :func:`options_key` is ``key`` (memos of other options are dropped)."""
        if self.options_key != key:
            for step in self.steps:
                step.forget()
            self.options_key = key

    def still_valid(self, graph: Graph, registry: Registry) -> bool:
        """Whether the plan still describes ``graph``: same revision, same node objects and modes,
        same specs (a pack reloaded, a node object replaced by undo)."""
        if self.revision != graph.revision:
            return False
        nodes, specs = graph.nodes, registry.nodes
        for step in self.steps:
            node = nodes.get(step.node_id)
            if node is not step.node or node.mode != step.mode or specs.get(node.type) is not step.spec:
                return False
        return True


def output_targets(graph: Graph, registry: Registry) -> tuple[str, ...]:
    """The nodes a run computes by default: every un-muted, un-bypassed output node."""
    specs = registry.nodes
    return tuple(nid for nid, n in graph.nodes.items() if n.mode == "normal"
                 and (s := specs.get(n.type)) is not None and s.output_node)


def target_ids(targets: Iterable[str | Node]) -> tuple[str, ...]:
    return tuple(t.id if isinstance(t, Node) else t for t in targets)


def options_key(options: RunOptions) -> tuple[str, str]:
    """What of the run options joins signatures: device, dtype, model roots and extras change what
    every node computes (first); the output folder only changes what output nodes do (second)."""
    try:
        extra = json.dumps(options.extra, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        extra = repr(options.extra)
    common = f"{options.device}|{options.dtype}|{[str(p) for p in options.models_dirs]}|{extra}"
    return common, f"{common}|out={options.output_dir}"


def _mark_releases(steps: list[Step], keep: set[str]) -> None:
    """Free each value after its last consumer (the targets' values are kept for the result)."""
    last_use: dict[str, Step] = {}
    for step in steps:
        for src in step.sources:
            last_use[src] = step
        for source in step.passthrough:
            if source is not None:
                last_use[source[0]] = step
    for src, step in last_use.items():
        if src not in keep:
            step.release.append(src)


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _hash(wiring: str, options_key: str, params: dict[str, Any], upstream: tuple[str, ...],
          fingerprint: str | None) -> str:
    """Hash of the node's type and wiring, run options, params, upstream signatures, fingerprint."""
    try:
        ptext = _ENCODER.encode(params)
    except (TypeError, ValueError):
        ptext = repr(sorted(params.items(), key=lambda kv: kv[0]))
    text = f"{wiring}|{options_key}|{ptext}|{'|'.join(upstream)}|{fingerprint}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _snapshot(params: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` that later edits of nested values cannot change."""
    for v in params.values():
        if isinstance(v, (list, dict)):
            return json.loads(json.dumps(params, default=repr))
    return dict(params)
