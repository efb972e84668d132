"""A session: a registry (node packs), an executor with its output cache, the resources node packs
keep (loaded models, model-folder listings) and default run options — what a script, the CLI, the
editor or a server holds.

``Session()`` starts afresh: nothing cached, nothing loaded (tests and servers make as many as
they need). :func:`default_session`, the one the module-level functions of :mod:`nodegraph.api`
use, holds the process-wide cache (:func:`~nodegraph.cache.shared_cache`) and resources
(:func:`~nodegraph.resources.default_resources`) — what Executors and RunOptions made without
their own use too.
"""
from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import format as graph_format
from .cache import OutputCache, shared_cache
from .context import RunOptions
from .errors import GraphValidationError, Problem, UsageError
from .executor import Callbacks, Executor
from .graph import Graph, Node
from .opening import Opened, open_graph
from .overrides import parse_assignment
from .registry import Registry
from .resources import Resources, default_resources
from .results import RunResult
from .validate import errors
from .validate import validate as _validate


class Session:
    """A registry, an executor with its output cache, the packs' resources and default run options.

    Without a registry, packs are discovered and loaded on first use. ``cache`` (default: a new
    one) and ``resources`` (default: those ``options`` carry, else new ones) may be shared with
    another session, e.g. a second editor window's. ``options.resources`` is set to the session's.
    """

    def __init__(self, registry: Registry | None = None, *, options: RunOptions | None = None,
                 cache: OutputCache | None = None, resources: Resources | None = None):
        options = options or RunOptions()
        self._registry = registry
        self.cache = cache if cache is not None else OutputCache()
        self.resources = resources or options.resources or Resources()
        self._executor: Executor | None = None
        self.options = options

    @property
    def options(self) -> RunOptions:
        """Default run options (carrying the session's resources)."""
        return self._options

    @options.setter
    def options(self, options: RunOptions) -> None:
        self._options = replace(options, resources=self.resources)
        if self._executor is not None:
            self._executor.options = self._options

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from .plugins import load_registry

            self._registry = load_registry()
        return self._registry

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = Executor(self.registry, self.cache, self.options)
        return self._executor

    # -- graphs ----------------------------------------------------------------------------
    def load(self, path: str | os.PathLike[str]) -> Graph:
        """Read a graph file, a ComfyUI workflow or API prompt (imported), or a PNG/WebP carrying
        any of them (raises GraphLoadError). See :mod:`nodegraph.opening`."""
        return self.open_graph(path).graph

    def open_graph(self, path: str | os.PathLike[str]) -> Opened:
        """:meth:`load`, telling also which format the file was in and what an import changed."""
        return open_graph(path, lambda: self.registry.nodes)

    def save(self, graph: Graph, path: str | os.PathLike[str]) -> Path:
        """Write the graph file atomically."""
        return graph_format.save(graph, path)

    def new_graph(self) -> Graph:
        return Graph()

    def add_node(self, graph: Graph, type_id: str, title: str | None = None,
                 pos: tuple[float, float] = (0, 0), **params: Any) -> Node:
        """Add a node with every param at its default, overridden by ``params``."""
        spec = self.registry[type_id]
        unknown = [k for k in params if spec.param(k) is None]
        if unknown:
            raise UsageError(f"{type_id} has no param(s) {', '.join(unknown)}; its params are "
                             + (", ".join(p.name for p in spec.params) or "none"))
        values = spec.default_params()
        values.update(params)
        return graph.add_node(type_id, values, title=title, pos=pos)

    def set(self, graph: Graph, assignment: str) -> tuple[Node, str, Any]:
        """Apply ``NODE.PARAM=VALUE`` (NODE: id or unique title; VALUE parsed by the param's kind)."""
        node, name, value = parse_assignment(graph, self.registry, assignment)
        graph.set_param(node, name, value)
        return node, name, value

    # -- checking and running ---------------------------------------------------------------
    def validate(self, graph: Graph, outputs: Iterable[str] | None = None) -> list[Problem]:
        """Every problem of the graph (errors and warnings). Problems of nodes that ``outputs``
        (default: the output nodes) do not need are warnings: a run leaves those nodes out."""
        return _validate(graph, self.registry, self.options, outputs)

    def run(self, graph: Graph, *, on_event: Callbacks = None, outputs: Iterable[str] | None = None,
            validate: bool = True, out_dir: str | os.PathLike[str] | None = None,
            options: RunOptions | None = None, advance: bool = False,
            stop: threading.Event | None = None) -> RunResult:
        """Validate (errors raise GraphValidationError) and run. Raises NodeExecutionError naming
        the failed node, or Interrupted. ``outputs`` names nodes whose outputs you want back
        (default: the output nodes). ``advance=True`` applies each seed's "control after run"
        once the run succeeded (:meth:`advance_controls`), as editors do. ``stop``: an event of
        yours that interrupts this run whenever it is set, also before the run starts (for runs
        on another thread; :meth:`interrupt` stops the current run either way)."""
        opts = options or self.options
        if out_dir is not None:
            opts = replace(opts, output_dir=Path(out_dir))
        if opts.resources is None:
            opts = replace(opts, resources=self.resources)
        if validate:
            bad = errors(_validate(graph, self.registry, opts, outputs))
            if bad:
                raise GraphValidationError(bad)
        result = self.executor.run(graph, outputs=outputs, on_event=on_event, options=opts, stop=stop)
        if advance:
            self.advance_controls(graph)
        return result

    def interrupt(self) -> None:
        """Stop the current run (safe from any thread)."""
        self.executor.interrupt()

    def advance_controls(self, graph: Graph, rng: random.Random | None = None
                         ) -> list[tuple[str, str, Any, Any]]:
        """Apply each seed's "control after run" (increment/decrement/randomize; wraps at min/max),
        as editors do after a run. Returns ``(node id, param, old, new)`` for each change."""
        rng = rng or random.Random()
        changes = []
        for node in graph.nodes.values():
            spec = self.registry.get(node.type)
            if spec is None or node.mode == "muted":
                continue
            for p in spec.params:
                if p.control_after_run is None:
                    continue
                mode = node.control_after_run.get(p.name, p.control_after_run)
                old = node.params.get(p.name, p.default)
                if mode == "fixed" or type(old) is not int:
                    continue
                lo = int(p.min) if p.min is not None else 0
                hi = int(p.max) if p.max is not None else 2**64 - 1
                if mode == "increment":
                    new = old + 1 if old < hi else lo
                elif mode == "decrement":
                    new = old - 1 if old > lo else hi
                else:
                    new = rng.randint(lo, hi)
                graph.set_param(node, p.name, new)
                changes.append((node.id, p.name, old, new))
        return changes


_default: Session | None = None


def default_session() -> Session:
    """The session the module-level functions of :mod:`nodegraph.api` use (packs loaded on first
    use), with the process-wide cache and resources."""
    global _default
    if _default is None:
        _default = Session(cache=shared_cache(), resources=default_resources())
    return _default
