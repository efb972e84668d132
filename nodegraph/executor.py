"""Run a graph: the plan validation builds (:func:`nodegraph.validate.build_plan`), one step after
another, reusing cached outputs.

Each step's signature (:mod:`nodegraph.plan`) is looked up in the :class:`OutputCache`; a node
whose signature is there does not run. Nodes flagged ``not_cacheable`` always run, and so does
everything downstream of them. An Executor keeps the plan of each graph it ran while the graph's
structure is unchanged, so re-running a graph whose params changed plans nothing.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Union

from .cache import CacheEntry, OutputCache, estimate_nbytes, shared_cache
from .context import RunContext, RunOptions
from .errors import Absent, Interrupted, NodeError, NodeExecutionError, out_of_memory
from .events import (Event, NodeCached, NodeFailed, NodeFinished, NodeStarted, RunFailed,
                     RunFinished, RunInterrupted, RunStarted)
from .graph import Graph, Node
from .plan import Plan, Step, options_key, output_targets, target_ids
from .registry import NodeSpec, Registry
from .resources import resources_for
from .results import RunResult, RunStats
from .validate import build_plan

__all__ = ["CacheEntry", "Callbacks", "Executor", "OutputCache", "RunResult", "RunStats",
           "estimate_nbytes", "shared_cache"]

log = logging.getLogger("nodegraph.executor")

EventCallback = Callable[[Event], None]
Callbacks = Union[EventCallback, Sequence[EventCallback], None]

MISSING = object()
"""The value of a bypassed node's output that has nothing to pass through."""


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
        self._plans: dict[int, tuple[weakref.ref[Graph], Plan]] = {}
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
        return list(self._plan(graph, targets).node_ids)

    def _plan(self, graph: Graph, targets: Iterable[str | Node] | None) -> Plan:
        """The plan of ``graph`` for ``targets``: the one kept from the last run while it still
        describes the graph, else a new one from validation (GraphValidationError if it cannot)."""
        wanted = output_targets(graph, self.registry) if targets is None else target_ids(targets)
        key = id(graph)
        held = self._plans.get(key)
        if held is not None and held[0]() is graph:
            kept = held[1]
            if kept.targets == wanted and kept.still_valid(graph, self.registry):
                return kept
        plan = build_plan(graph, self.registry, wanted)
        plans = self._plans
        plans[key] = (weakref.ref(graph, lambda _r, k=key: plans.pop(k, None)), plan)
        return plan

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
        plan = self._plan(graph, targets)
        with resources_for(options).run_scope():
            run = _Run(self.cache, plan, graph, options, _make_emitter(on_event), stop,
                       next(self._run_ids))
            try:
                for step in plan.steps:
                    if stop.is_set():
                        raise Interrupted(None)
                    run.visit(step)
            except Interrupted as exc:
                run.interrupted(exc)
                raise
            return run.finish()


class _Run:
    """The state of one run: each visited node's output values and signature, what output nodes
    showed, the stats; :meth:`visit` does one step."""

    def __init__(self, cache: OutputCache, plan: Plan, graph: Graph, options: RunOptions,
                 emit: EventCallback | None, stop: threading.Event, run_id: int):
        self.started = time.perf_counter()
        self.cache, self.plan, self.graph, self.options = cache, plan, graph, options
        self.emit, self.stop = emit, stop
        self.options_key = options_key(options)
        plan.use_options(self.options_key)
        self.values: dict[str, tuple[Any, ...]] = {}
        self.signatures: dict[str, str] = {}
        self.ui: dict[str, dict[str, Any]] = {}
        self.stats = RunStats(run_id)
        if emit:
            emit(RunStarted(run_id, plan.node_ids))

    def visit(self, step: Step) -> None:
        """Pass a bypassed node's inputs on, or take the node's outputs from the cache, or run it."""
        if step.mode == "bypassed":
            self._pass_through(step)
        else:
            spec = step.spec
            upstream = tuple(map(self.signatures.__getitem__, step.sources))
            fingerprint = self._fingerprint(step) if spec.fingerprint is not None else None
            options_key = self.options_key[1] if spec.output_node else self.options_key[0]
            signature, params = step.signature(upstream, fingerprint, options_key)
            entry = None if spec.not_cacheable else self.cache.get(signature)
            if entry is not None:
                self._take_cached(step, entry)
            else:
                signature = self._execute(step, signature, params)
            self.signatures[step.node_id] = signature
        for src in step.release:
            self.values.pop(src, None)

    def _pass_through(self, step: Step) -> None:
        values, signatures = self.values, self.signatures
        values[step.node_id] = tuple(values[s[0]][s[1]] if s is not None else MISSING
                                     for s in step.passthrough)
        signatures[step.node_id] = "bypass|" + "|".join(
            signatures[s[0]] + f"/{s[1]}" if s is not None else "-" for s in step.passthrough)

    def _fingerprint(self, step: Step) -> str | None:
        try:
            return step.spec.fingerprint_of(step.effective_params(), self.options)
        except Exception as exc:
            # A fingerprint that cannot be computed (e.g. the file is missing) forces a re-run;
            # the node itself will then report the real problem.
            return f"!{type(exc).__name__}:{exc}@{time.monotonic_ns()}"

    def _take_cached(self, step: Step, entry: CacheEntry) -> None:
        self.values[step.node_id] = entry.outputs
        self.stats.cached.append(step.node_id)
        if entry.ui:
            self.ui[step.node_id] = entry.ui
        if self.emit:
            self.emit(NodeCached(step.node_id, step.spec.type_id, entry.ui))

    def _execute(self, step: Step, signature: str, params: dict[str, Any] | None) -> str:
        """Run the node's function; cache and keep its outputs. Returns the signature its outputs
        go by (a not-cacheable node's is made unique to this run)."""
        node_id, spec = step.node_id, step.spec
        if self.emit:
            self.emit(NodeStarted(node_id, spec.type_id))
        kwargs = self._arguments(step, params if params is not None else step.effective_params())
        ctx = None
        if spec.takes_context:
            ctx = kwargs["ctx"] = RunContext(node_id, spec.type_id, self.options, self.graph,
                                             self.emit, self.stop, self.stats)
        t0 = time.perf_counter()
        try:
            outputs = _normalize(spec.function(**kwargs), spec)
        except Interrupted:
            raise
        except Exception as exc:
            self._fail(step, out_of_memory(exc, step.node) or exc)
        seconds = time.perf_counter() - t0
        node_ui = ctx.ui if ctx is not None else {}
        if spec.not_cacheable:
            signature = f"{signature}@run{self.stats.run_id}"
        else:
            nbytes = (estimate_nbytes(outputs[0]) if len(outputs) == 1
                      else sum(estimate_nbytes(o) for o in outputs))
            self.cache.put(signature, CacheEntry(outputs, node_ui, nbytes))
        self.values[node_id] = outputs
        self.stats.executed.append(node_id)
        self.stats.seconds[node_id] = seconds
        if node_ui:
            self.ui[node_id] = node_ui
        if self.emit:
            self.emit(NodeFinished(node_id, spec.type_id, seconds, node_ui))
        return signature

    def _arguments(self, step: Step, params: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of the node's function: its params, then its connected inputs. An
        empty value (an :class:`Absent` output, or nothing for a bypassed node to pass on) fails the
        node in a required input and is None in an optional one."""
        kwargs = params
        for name, src, index in step.inputs:
            value = self.values[src][index]
            if value is not MISSING and not isinstance(value, Absent):
                kwargs[name] = value
                continue
            inp = step.spec.input(name)
            if inp is not None and not inp.optional:
                why = (value.reason if isinstance(value, Absent) else f"it comes from node {src}, "
                       "which is bypassed and has no connected input of that type to pass through")
                self._fail(step, NodeError(f"input {name!r} is empty: {why}"))
            if inp is not None and isinstance(value, Absent):
                kwargs[name] = None  # an optional input left empty
        return kwargs

    def _fail(self, step: Step, exc: BaseException) -> None:
        stats = self.stats
        stats.total_seconds = time.perf_counter() - self.started
        tb = traceback.format_exc()
        if exc.__cause__ is not None and exc.__traceback__ is None:  # a translation of the real error
            tb = "".join(traceback.format_exception(exc.__cause__))
        if self.emit:
            self.emit(NodeFailed(step.node_id, step.spec.type_id, exc, tb))
            self.emit(RunFailed(step.node_id, stats))
        raise NodeExecutionError(step.node_id, step.spec.type_id, exc, tb, stats) from exc

    def interrupted(self, exc: Interrupted) -> None:
        self.stats.total_seconds = time.perf_counter() - self.started
        exc.stats = self.stats
        if self.emit:
            self.emit(RunInterrupted(exc.node_id, self.stats))

    def finish(self) -> RunResult:
        """The targets' outputs, what output nodes showed, the stats; emits RunFinished."""
        self.stats.total_seconds = time.perf_counter() - self.started
        steps = {s.node_id: s for s in self.plan.steps} if self.plan.targets else {}
        outputs: dict[str, dict[str, Any]] = {}
        for target in self.plan.targets:
            values = self.values.get(target, ())
            names = [o.name for o in steps[target].spec.outputs]
            outputs[target] = {n: v for n, v in zip(names, values) if v is not MISSING}
        if self.emit:
            self.emit(RunFinished(self.stats))
        return RunResult(outputs, self.ui, self.stats)


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
