"""Run a graph: prune to what the outputs need, order topologically, reuse cached outputs.

A node's *signature* is a hash of its type, its params (defaults filled in), the signatures of the
outputs feeding it, the run options that change results (device, dtype, model roots; the output
folder for output nodes) and, if its spec declares one, its fingerprint. A node whose signature is in
the process-wide :class:`OutputCache` does not run. Nodes flagged ``not_cacheable`` always run,
and so does everything downstream of them.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Union

from .cache import CacheEntry, OutputCache, estimate_nbytes, shared_cache
from .context import RunContext, RunOptions
from .errors import GraphValidationError, Interrupted, NodeExecutionError, Problem
from .events import (Event, NodeCached, NodeFailed, NodeFinished, NodeStarted, RunFailed,
                     RunFinished, RunInterrupted, RunStarted)
from .graph import Graph, Node
from .registry import NodeSpec, Registry, _arity
from .results import RunResult, RunStats

__all__ = ["CacheEntry", "Callbacks", "Executor", "OutputCache", "RunResult", "RunStats",
           "estimate_nbytes", "shared_cache"]

log = logging.getLogger("nodegraph.executor")

EventCallback = Callable[[Event], None]
Callbacks = Union[EventCallback, Sequence[EventCallback], None]


# --------------------------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------------------------
class _Step:
    """One node of an execution plan, with the memo of its last signature."""

    __slots__ = ("node_id", "node", "spec", "mode", "inputs", "srcs", "passthrough", "release",
                 "sig_static", "memo_params", "memo_up", "memo_fp", "memo_sig")

    def __init__(self, node: Node, spec: NodeSpec):
        self.node_id = node.id
        self.node = node
        self.spec = spec
        self.mode = node.mode
        self.inputs: list[tuple[str, str, int]] = []  # (input or param name, src id, output index)
        self.srcs: tuple[str, ...] = ()  # the src ids of ``inputs``
        self.passthrough: list[tuple[str, int] | None] = []  # bypassed: per output, its source
        self.release: list[str] = []  # sources whose values are no longer needed after this step
        self.sig_static = ""
        self.memo_params: dict[str, Any] | None = None
        self.memo_up: tuple[str, ...] = ()
        self.memo_fp: str | None = None
        self.memo_sig = ""


class _Plan:
    __slots__ = ("revision", "targets", "steps", "options_key")

    def __init__(self, revision: int, targets: tuple[str, ...], steps: list[_Step]):
        self.revision = revision
        self.targets = targets
        self.steps = steps
        self.options_key: tuple[str, str] | None = None  # the options the memos were made with


def _options_key(options: RunOptions) -> tuple[str, str]:
    """What of the run options joins signatures: device, dtype, model roots and extras change what
    every node computes; the output folder only changes what output nodes do."""
    try:
        extra = json.dumps(options.extra, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        extra = repr(options.extra)
    common = f"{options.device}|{options.dtype}|{[str(p) for p in options.models_dirs]}|{extra}"
    return common, f"{common}|out={options.output_dir}"


_MISSING = object()


def _id_key(node_id: str) -> tuple[int, int, str]:
    return (0, int(node_id), "") if node_id.isascii() and node_id.isdigit() else (1, 0, node_id)


def _snapshot(params: dict[str, Any]) -> dict[str, Any]:
    for v in params.values():
        if isinstance(v, (list, dict)):
            return json.loads(json.dumps(params, default=repr))
    return dict(params)


# --------------------------------------------------------------------------------------------
# executor
# --------------------------------------------------------------------------------------------
class Executor:
    """Runs graphs against one registry, sharing a cache of node outputs across runs and graphs.

    One run at a time per Executor; :meth:`interrupt` may be called from any thread. A run reads
    the graph while it goes: an editor that stays editable during a run should run a copy
    (``graph.copy()``) — signatures are content-based, so the copy still hits the cache.
    """

    def __init__(self, registry: Registry, cache: OutputCache | None = None,
                 options: RunOptions | None = None):
        self.registry = registry
        self.cache = cache if cache is not None else shared_cache()
        self.options = options or RunOptions()
        self._stop = threading.Event()
        self._current_stop: threading.Event | None = None
        self._lock = threading.Lock()
        # Plans by id(graph); a weak reference checks identity and drops the plan with the graph.
        self._plans: dict[int, tuple[weakref.ref[Graph], _Plan]] = {}
        self._run_ids = itertools.count(1)

    def interrupt(self) -> None:
        """Ask the current run to stop: it raises Interrupted at the next ``ctx.progress()`` /
        ``ctx.check_interrupt()`` of a node, or before the next node starts."""
        self._stop.set()
        current = self._current_stop
        if current is not None:
            current.set()

    # -- planning --------------------------------------------------------------------------
    def plan(self, graph: Graph, targets: Iterable[str] | None = None) -> list[str]:
        """The node ids a run would visit, in execution order."""
        return [s.node_id for s in self._plan(graph, targets).steps]

    def _plan(self, graph: Graph, targets: Iterable[str] | None) -> _Plan:
        nodes = graph.nodes
        get_spec = self.registry.nodes.get
        if targets is None:
            target_ids = tuple(nid for nid, n in nodes.items() if n.mode == "normal"
                               and (s := get_spec(n.type)) is not None and s.output_node)
        else:
            target_ids = tuple(n.id if isinstance(n, Node) else n for n in targets)
        key = id(graph)
        held = self._plans.get(key)
        if held is not None and held[0]() is graph:
            cached = held[1]
            if (cached.revision == graph.revision and cached.targets == target_ids
                    and self._still_valid(cached, nodes)):
                return cached
        plan = _Plan(graph.revision, target_ids, self._build(graph, target_ids))
        plans = self._plans
        self._plans[key] = (weakref.ref(graph, lambda _r, k=key: plans.pop(k, None)), plan)
        return plan

    def _still_valid(self, plan: _Plan, nodes: Any) -> bool:
        get_spec = self.registry.nodes.get
        for step in plan.steps:
            node = nodes.get(step.node_id)
            if node is not step.node or node.mode != step.mode or get_spec(node.type) is not step.spec:
                return False
        return True

    def _build(self, graph: Graph, targets: tuple[str, ...]) -> list[_Step]:
        nodes = graph.nodes
        reg = self.registry
        problems: list[Problem] = []
        if not targets:
            raise GraphValidationError([Problem(
                "no_output_node", "nothing to run: the graph has no (un-muted) output node such "
                "as SaveImage; add one")])
        for t in targets:
            if t not in nodes:
                problems.append(Problem("missing_node", f"there is no node {t!r} to compute", t))
        needed: set[str] = set()
        edges: list[tuple[str, str]] = []
        ins = graph._in  # links into each node, by input name
        stack = [t for t in targets if t in nodes]
        while stack:
            nid = stack.pop()
            if nid in needed:
                continue
            needed.add(nid)
            for link in ins.get(nid, {}).values():
                src = nodes.get(link.src)
                if src is not None and src.mode != "muted":
                    edges.append((link.src, nid))
                    if link.src not in needed:
                        stack.append(link.src)
        import networkx as nx

        dag = nx.DiGraph()
        dag.add_nodes_from(sorted(needed, key=_id_key))
        dag.add_edges_from(edges)
        try:
            order = list(nx.topological_sort(dag))
        except nx.NetworkXUnfeasible:
            cycle = [a for a, _ in nx.find_cycle(dag)]
            first = nodes[cycle[0]]
            raise GraphValidationError([Problem(
                "cycle", f"nodes {', '.join(cycle)} form a cycle; remove one of the links between "
                "them", first.id, first.type)]) from None

        steps: list[_Step] = []
        index: dict[str, _Step] = {}
        for nid in order:
            node = nodes[nid]
            spec = reg.nodes.get(node.type)
            if spec is None:
                problems.append(Problem("unknown_type", reg.unknown_type_message(node.type),
                                        nid, node.type, "type"))
                continue
            step = _Step(node, spec)
            links = ins.get(nid, {})
            for name, link in (sorted(links.items()) if len(links) > 1 else links.items()):
                src = nodes.get(link.src)
                is_input = spec.input(name) is not None
                field_name = ("input " if is_input else "param ") + name
                if src is None:
                    problems.append(Problem("missing_node", f"linked from node {link.src!r}, which "
                                            "does not exist", nid, node.type, field_name))
                    continue
                if src.mode == "muted":
                    continue
                if not is_input and spec.param(name) is None:
                    problems.append(Problem("unknown_input", f"{spec.type_id} has no input "
                                            f"{name!r}", nid, node.type, f"input {name}"))
                    continue
                src_step = index.get(link.src)
                if src_step is None:
                    continue  # its own problem is reported
                idx = src_step.spec.output_index(link.output)
                if idx < 0:
                    problems.append(Problem("missing_output", f"node {src.label} has no output "
                                            f"{link.output!r}", nid, node.type, field_name))
                    continue
                step.inputs.append((name, link.src, idx))
            linked = {name for name, _, _ in step.inputs}
            if node.mode == "bypassed":
                for out in spec.outputs:
                    source = None
                    for inp in spec.inputs:
                        if inp.type == out.type and inp.name in linked:
                            source = next((s, i) for n, s, i in step.inputs if n == inp.name)
                            break
                    step.passthrough.append(source)
            else:
                for inp in spec.inputs:
                    if not inp.optional and inp.name not in linked:
                        problems.append(Problem("missing_input", "required input is not connected",
                                                nid, node.type, f"input {inp.name}"))
            step.srcs = tuple(src for _, src, _ in step.inputs)
            step.sig_static = spec.token + "|" + repr([(n, i) for n, _, i in step.inputs])
            steps.append(step)
            index[nid] = step
        if problems:
            raise GraphValidationError(problems)
        # Free each value after its last consumer (targets are kept for the result).
        last_use: dict[str, _Step] = {}
        for step in steps:
            for _, src, _ in step.inputs:
                last_use[src] = step
            for src_idx in step.passthrough:
                if src_idx is not None:
                    last_use[src_idx[0]] = step
        keep = set(targets)
        for src, step in last_use.items():
            if src not in keep:
                step.release.append(src)
        return steps

    # -- running ---------------------------------------------------------------------------
    def run(self, graph: Graph, *, outputs: Iterable[str] | None = None,
            on_event: Callbacks = None, options: RunOptions | None = None,
            stop: threading.Event | None = None) -> RunResult:
        """Run what the output nodes (or the nodes named in ``outputs``) need.

        Raises GraphValidationError if the graph cannot be planned, NodeExecutionError naming the
        node that failed (nodes finished before it stay cached), Interrupted if interrupted.
        Validate first (:func:`nodegraph.validate.validate`) for the full list of problems.

        ``stop``: an event of the caller's that interrupts this run when set, even if it was set
        before the run began (a client that starts runs on another thread hands each run its own,
        so a Stop can never be lost to the run's start). :meth:`interrupt` sets it too.
        """
        with self._lock:
            if stop is None:
                self._stop.clear()
                stop = self._stop
            self._current_stop = stop
            try:
                return self._run(graph, outputs, on_event, options or self.options, stop)
            finally:
                self._current_stop = None

    def _run(self, graph: Graph, targets: Iterable[str] | None, on_event: Callbacks,
             options: RunOptions, stop: threading.Event) -> RunResult:
        t_start = time.perf_counter()
        emit = _make_emitter(on_event)
        plan = self._plan(graph, targets)
        okey = _options_key(options)
        if plan.options_key != okey:
            for s in plan.steps:
                s.memo_params = None
            plan.options_key = okey
        run_id = next(self._run_ids)
        stats = RunStats(run_id)
        if emit:
            emit(RunStarted(run_id, tuple(s.node_id for s in plan.steps)))
        values: dict[str, tuple[Any, ...]] = {}
        sigs: dict[str, str] = {}
        ui: dict[str, dict[str, Any]] = {}
        cache = self.cache
        perf = time.perf_counter
        try:
            stopped = stop.is_set
            for step in plan.steps:
                if stopped():
                    raise Interrupted(None)
                nid = step.node_id
                spec = step.spec
                if step.mode == "bypassed":
                    outs = tuple(values[s[0]][s[1]] if s is not None else _MISSING
                                 for s in step.passthrough)
                    values[nid] = outs
                    sigs[nid] = "bypass|" + "|".join(
                        sigs[s[0]] + f"/{s[1]}" if s is not None else "-" for s in step.passthrough)
                    for src in step.release:
                        values.pop(src, None)
                    continue
                params = step.node.params
                up = tuple(map(sigs.__getitem__, step.srcs))
                fp = None
                if spec.fingerprint is not None:
                    fp = self._fingerprint(step, params, options)
                eff = None  # the params with defaults filled in, when computed
                if (step.memo_params is not None and up == step.memo_up and fp == step.memo_fp
                        and params == step.memo_params):
                    sig = step.memo_sig
                else:
                    eff = {p.name: params.get(p.name, p.default) for p in spec.params}
                    sig = _signature(step, eff, up, fp, okey[1] if spec.output_node else okey[0])
                    step.memo_params = _snapshot(params)
                    step.memo_up, step.memo_fp, step.memo_sig = up, fp, sig
                entry = None if spec.not_cacheable else cache.get(sig)
                if entry is not None:
                    values[nid] = entry.outputs
                    stats.cached.append(nid)
                    if entry.ui:
                        ui[nid] = entry.ui
                    if emit:
                        emit(NodeCached(nid, spec.type_id, entry.ui))
                else:
                    if emit:
                        emit(NodeStarted(nid, spec.type_id))
                    kwargs = eff if eff is not None else {
                        p.name: params.get(p.name, p.default) for p in spec.params}
                    for name, src, idx in step.inputs:
                        v = values[src][idx]
                        if v is not _MISSING:
                            kwargs[name] = v
                        elif (inp := spec.input(name)) is not None and not inp.optional:
                            self._fail(step, ValueError(
                                f"input {name!r} comes from node {src}, which is bypassed and has "
                                f"no connected input of that type to pass through"), stats, t_start,
                                emit)
                    ctx = None
                    if spec.takes_context:
                        ctx = RunContext(nid, spec.type_id, options, graph, emit, stop)
                        kwargs["ctx"] = ctx
                    t0 = perf()
                    try:
                        outs = _normalize(spec.function(**kwargs), spec)
                    except Interrupted:
                        raise
                    except Exception as exc:
                        self._fail(step, exc, stats, t_start, emit)
                    seconds = perf() - t0
                    node_ui = ctx.ui if ctx is not None else {}
                    if not spec.not_cacheable:
                        nbytes = (estimate_nbytes(outs[0]) if len(outs) == 1
                                  else sum(estimate_nbytes(o) for o in outs))
                        cache.put(sig, CacheEntry(outs, node_ui, nbytes))
                    else:
                        sig = f"{sig}@run{run_id}"
                    values[nid] = outs
                    stats.executed.append(nid)
                    stats.seconds[nid] = seconds
                    if node_ui:
                        ui[nid] = node_ui
                    if emit:
                        emit(NodeFinished(nid, spec.type_id, seconds, node_ui))
                sigs[nid] = sig
                for src in step.release:
                    values.pop(src, None)
        except Interrupted as exc:
            stats.total_seconds = perf() - t_start
            exc.stats = stats
            if emit:
                emit(RunInterrupted(exc.node_id, stats))
            raise
        stats.total_seconds = perf() - t_start
        result_outputs: dict[str, dict[str, Any]] = {}
        steps_by_id = {s.node_id: s for s in plan.steps} if plan.targets else {}
        for t in plan.targets:
            outs = values.get(t, ())
            names = [o.name for o in steps_by_id[t].spec.outputs]
            result_outputs[t] = {n: v for n, v in zip(names, outs) if v is not _MISSING}
        if emit:
            emit(RunFinished(stats))
        return RunResult(result_outputs, ui, stats)

    def _fingerprint(self, step: _Step, params: dict[str, Any], options: RunOptions) -> str:
        spec = step.spec
        eff = {p.name: params.get(p.name, p.default) for p in spec.params}
        fn = spec.fingerprint
        try:
            if _arity(fn) >= 2:  # f(params, options): e.g. a model file found through --models
                return str(fn(eff, options))  # type: ignore[misc]
            return str(fn(eff))  # type: ignore[misc]
        except Exception as exc:
            # A fingerprint that cannot be computed (e.g. the file is missing) forces a re-run;
            # the node itself will then report the real problem.
            return f"!{type(exc).__name__}:{exc}@{time.monotonic_ns()}"

    def _fail(self, step: _Step, exc: BaseException, stats: RunStats, t_start: float,
              emit: EventCallback | None) -> None:
        stats.total_seconds = time.perf_counter() - t_start
        tb = traceback.format_exc()
        if emit:
            emit(NodeFailed(step.node_id, step.spec.type_id, exc, tb))
            emit(RunFailed(step.node_id, stats))
        raise NodeExecutionError(step.node_id, step.spec.type_id, exc, tb, stats) from exc


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _signature(step: _Step, eff: dict[str, Any], up: tuple[str, ...], fp: str | None,
               okey: str) -> str:
    """Hash of the node's type, run options, effective params, upstream signatures, fingerprint."""
    try:
        ptext = _ENCODER.encode(eff)
    except (TypeError, ValueError):
        ptext = repr(sorted(eff.items(), key=lambda kv: kv[0]))
    text = f"{step.sig_static}|{okey}|{ptext}|{'|'.join(up)}|{fp}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _normalize(result: Any, spec: NodeSpec) -> tuple[Any, ...]:
    """The node function's return value as a tuple in output order (TypeError if it cannot be)."""
    n = len(spec.outputs)
    if n == 0:
        return ()
    if n == 1:
        return (result,)
    if isinstance(result, (tuple, list)) and len(result) == n:
        return tuple(result)
    names = ", ".join(o.name for o in spec.outputs)
    got = (f"a {type(result).__name__} of {len(result)}" if isinstance(result, (tuple, list))
           else f"a {type(result).__name__}")
    raise TypeError(f"the node function returned {got}; a node with {n} outputs ({names}) must "
                    f"return a tuple of {n} values in that order")


def _make_emitter(on_event: Callbacks) -> EventCallback | None:
    if on_event is None:
        return None
    callbacks = [on_event] if callable(on_event) else list(on_event)
    if not callbacks:
        return None

    def emit(event: Event) -> None:
        for cb in callbacks:
            try:
                cb(event)
            except Exception:
                log.exception("an event callback raised on %s; the run goes on", type(event).__name__)

    return emit
