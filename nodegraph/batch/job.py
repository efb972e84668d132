"""``run_batch``: everything ``nodegraph batch`` does, as one function the API and CLI share.

graph + sweeps → items (keyed) → manifest (new or resumed) → coordinator over local worker
processes or Ray actors → outputs written once each, ``results.jsonl``, progress events.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from .. import format as graph_format
from ..context import RunOptions
from ..errors import GraphValidationError, UsageError
from ..graph import Graph
from ..session import Session
from ..validate import errors as error_problems
from ..validate import validate
from .coordinator import MAX_ATTEMPTS, Coordinator, Pool
from .items import Item, ModelHasher, build_items, default_hash_cache, model_resolver
from .manifest import Manifest, manifest_from_folder, open_batch
from .progress import ProgressTracker, Sink
from .sweeps import Sweep, check_distinct, expand, parse_sweep
from .worker import WorkerConfig
from .writer import BatchWriter, Output, finished_items


PROGRESS_VERSION = 1
"""Version of the JSON progress events (docs/batch.md); bumped when a field changes meaning."""


@dataclass
class BatchResult:
    """What a batch run ended with (``done`` counts items done before this run too)."""

    out_dir: Path
    total: int
    done: int
    failed: dict[int, str] = field(default_factory=dict)
    skipped: int = 0
    retries: int = 0
    model_loads: int = 0
    workers_started: int = 0
    replacements: int = 0
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.done == self.total


def default_threads(workers: int) -> int:
    """CPU threads per local worker: the cores shared out evenly (at least one each)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


def plan_batch(graph: Graph | str | os.PathLike[str] | None, sweeps: Iterable[str | Sweep],
               session: Session, *, out_dir: Path, resume: bool,
               hasher: ModelHasher | None = None) -> tuple[Graph, Manifest]:
    """The graph and the manifest (sweeps expanded, items keyed) of the batch asked for.

    ``graph`` None with ``resume`` takes graph and sweeps from the folder's manifest."""
    sweeps = list(sweeps)
    if graph is None:
        if not resume or sweeps:
            raise UsageError("give the GRAPH file (it may be left out only with --resume and no --sweep, "
                             "to continue the batch in --out as it was started)")
        stored = manifest_from_folder(out_dir)
        graph = graph_format.from_data(stored.graph)
        parsed = stored.sweeps
    else:
        if not isinstance(graph, Graph):
            graph = session.load(graph)
        parsed = [s if isinstance(s, Sweep) else parse_sweep(graph, session.registry, s,
                                                             options=session.options)
                  for s in sweeps]
    check_distinct(parsed)
    resolver = model_resolver(session.registry, session.options)
    items = build_items(graph, expand(parsed), version=__version__, resolve=resolver,
                        hasher=hasher or ModelHasher(default_hash_cache()))
    manifest = Manifest(graph_format.to_data(graph), parsed, items, __version__)
    return graph, manifest


def _check_first_item(graph: Graph, items: Sequence[Item], session: Session) -> None:
    """Validate the graph with the first item's overrides: a broken graph stops the batch before
    any worker starts (a value that only some items have is reported per item)."""
    if not items:
        return
    probe = graph.copy()
    for node_id, param, value in items[0].overrides:
        probe.set_param(node_id, param, value)
    bad = error_problems(validate(probe, session.registry, session.options))
    if bad:
        raise GraphValidationError(bad)


def run_batch(graph: Graph | str | os.PathLike[str] | None, out_dir: str | os.PathLike[str],
              sweeps: Iterable[str | Sweep] = (), *, workers: int | None = None,
              ray: str | None = None, resume: bool = False,
              on_event: Sink | Sequence[Sink] | None = None, session: Session | None = None,
              threads: int | None = None, worker_cpus: float = 1, worker_gpus: float | None = None,
              max_attempts: int = MAX_ATTEMPTS, start_timeout: float = 600.0,
              handle_sigint: bool = True, pool: Pool | None = None) -> BatchResult:
    """Run (or resume) a batch: every item of the sweeps' grid, each output written exactly once.

    ``workers``: local worker processes (default: one per CUDA GPU, each seeing only its own,
    else 1; 0 runs the items in this process, one after another — for debugging and reference
    runs), or with ``ray`` (a cluster address such as
    ``"ray://head:10001"``, ``"127.0.0.1:6379"`` or ``"auto"``) the number of Ray actors (default:
    one per GPU of the cluster, else one per node). ``threads``: CPU threads per worker (default:
    the cores shared out among local workers; ``worker_cpus`` for Ray). ``on_event`` receives the
    progress events (see docs/batch.md). With ``handle_sigint`` (main thread only), the first
    Ctrl-C stops handing out items and lets running ones finish; the second aborts at once.
    Raises UsageError / GraphValidationError / ResumeRefused before anything runs when the request
    is wrong.
    """
    if workers is not None and (workers < 0 or (ray and workers < 1)):
        raise UsageError("workers must be at least 1 (0, without Ray: run the items in this process)")
    session = session or Session()
    out = Path(out_dir)
    graph, manifest = plan_batch(graph, sweeps, session, out_dir=out, resume=resume)
    _check_first_item(graph, manifest.items, session)
    manifest = open_batch(out, manifest, resume=resume)
    keys = {item.index: item.key for item in manifest.items}
    done, stale = finished_items(out, keys)
    for path in stale:
        path.unlink(missing_ok=True)
    todo = [item for item in manifest.items if item.index not in done]

    sinks: list[Sink] = [] if on_event is None else (
        [on_event] if callable(on_event) else list(on_event))
    tracker = ProgressTracker(sinks)
    backend = "ray" if ray else "local"
    if ray:
        from . import ray_backend

        connected = ray_backend.connect(ray)
        if workers is None:
            gpus = ray_backend.cluster_gpus()
            workers = int(gpus) if gpus >= 1 else max(1, ray_backend.cluster_nodes())
        if worker_gpus is None:
            worker_gpus = 1.0 if ray_backend.cluster_gpus() >= 1 else 0.0
    else:
        connected = False
        if workers is None:  # one per GPU (each its own), else one
            workers = max(1, len(_local_gpus(session.options)))
    inline = workers == 0
    n_workers = max(1, min(workers, len(todo))) if todo else 0
    tracker({"event": "start", "progress_version": PROGRESS_VERSION,
             "total": len(manifest.items), "skipped": len(done),
             "todo": len(todo), "workers": n_workers, "backend": backend, "out": str(out),
             "resume": resume})

    result = BatchResult(out, len(manifest.items), len(done), skipped=len(done))
    writer = BatchWriter(out)
    try:
        if todo:
            if pool is None:
                pool = _make_pool("inline" if inline else backend, graph, session.options,
                                  n_workers, threads, worker_cpus, worker_gpus or 0.0)
            summary = _coordinate(pool, todo, n_workers, writer, tracker, max_attempts,
                                  start_timeout, handle_sigint)
            result.done += len(summary.done)
            result.failed = summary.failed
            result.retries = summary.retries
            result.model_loads = summary.model_loads
            result.workers_started = summary.workers_started
            result.replacements = summary.replacements
            result.interrupted = summary.interrupted
            result.seconds = summary.seconds
    finally:
        writer.close()
        if connected:
            from . import ray_backend

            ray_backend.require_ray().shutdown()
    tracker({"event": "finish", "interrupted": result.interrupted,
             "model_loads": result.model_loads, "workers_started": result.workers_started,
             "replacements": result.replacements, "out": str(out)})
    return result


def _make_pool(backend: str, graph: Graph, options: RunOptions, workers: int,
               threads: int | None, worker_cpus: float, worker_gpus: float) -> Pool:
    config = WorkerConfig(graph=graph_format.to_data(graph), device=options.device,
                          dtype=options.dtype, models_dirs=tuple(str(p) for p in options.models_dirs))
    if backend == "ray":
        from .ray_backend import RayPool

        config.threads = threads or max(1, int(worker_cpus))
        return RayPool(config, num_cpus=worker_cpus, num_gpus=worker_gpus)
    from .local import InlinePool, LocalPool

    if backend == "inline":
        config.threads = threads
        return InlinePool(config)
    config.threads = threads or default_threads(workers)
    return LocalPool(config, gpus=_local_gpus(options))


def _local_gpus(options: RunOptions) -> list[str]:
    """GPUs to share out among local workers: none when the run asks for another device."""
    if options.device not in ("auto", "cuda"):
        return []
    from .local import visible_gpus

    return visible_gpus()


def _coordinate(pool: Pool, todo: list[Item], workers: int, writer: BatchWriter,
                tracker: ProgressTracker, max_attempts: int, start_timeout: float,
                handle_sigint: bool) -> Any:
    def on_done(item: Item, result: dict[str, Any], worker: str, attempt: int) -> None:
        outputs = [o if isinstance(o, Output) else Output(**o) for o in result.get("outputs", [])]
        record = writer.write_item(item.index, item.key, item.overrides_json(), outputs,
                                   seconds=float(result.get("seconds", 0.0)), worker=worker,
                                   attempts=attempt, threads=result.get("threads"))
        tracker({"event": "item_done", "index": item.index, "key": item.key, "worker": worker,
                 "seconds": record["seconds"], "files": [f["path"] for f in record["files"]],
                 "attempt": attempt})

    def on_failed(item: Item, kind: str, error: str, worker: str | None, attempt: int) -> None:
        writer.write_error(item.index, item.key, item.overrides_json(), kind=kind, error=error,
                           worker=worker, attempts=attempt)
        tracker({"event": "item_failed", "index": item.index, "key": item.key, "kind": kind,
                 "error": error, "worker": worker, "attempt": attempt})

    coordinator = Coordinator(pool, todo, workers=workers, on_done=on_done, on_failed=on_failed,
                              emit=tracker, tick=tracker.tick, max_attempts=max_attempts,
                              start_timeout=start_timeout)
    restore = _install_sigint(coordinator) if handle_sigint else (lambda: None)
    try:
        return coordinator.run()
    finally:
        restore()


def _install_sigint(coordinator: Coordinator) -> Callable[[], None]:
    """First Ctrl-C: stop handing out items (running ones finish). Second: abort now."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        if coordinator.stopping:
            raise KeyboardInterrupt
        print("\nstopping: running items finish, no new ones start (Ctrl-C again to abort; "
              "--resume continues later)", file=sys.stderr)
        coordinator.stop()

    previous = signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)
