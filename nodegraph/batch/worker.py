"""The worker side of a batch: run items with the ordinary engine, return their files' bytes.

A worker process (local or a Ray actor) holds one :class:`ItemRunner`: one Session whose executor
uses the process-wide cache, and one copy of the graph on which each item's overrides are set —
so the model loader's output (and the weights behind it) stays cached from item to item and a
model loads once per worker. Each item runs into a private staging folder; the files the output
nodes report (``ctx.ui["files"]``) are read back, the staging folder removed, and the bytes
returned to the coordinator, which alone writes the batch folder. Models are read from the
worker's own model folders; nothing big travels.

A result is a plain dict: ``{"status": "ok", "outputs": [...], "seconds", "model_loads"}`` or
``{"status": "error", "kind": "graph" | "oom" | "model_mismatch" | "internal", "error": text,
"model_loads"}``; ``model_loads`` counts the model files this worker has read so far (what its
runs' stats report: ``RunStats.model_loads``).
Errors of the graph are returned, never raised, so the coordinator can tell them from a worker
that died.
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..context import RunOptions
from ..errors import GraphValidationError, NodeExecutionError, UsageError
from ..graph import id_sort_key
from .writer import Output

@dataclass
class WorkerConfig:
    """What a worker needs to start: the graph file's data, run options, its thread count."""

    graph: dict[str, Any]
    device: str = "auto"
    dtype: str = "auto"
    models_dirs: tuple[str, ...] = ()
    threads: int | None = None
    staging_root: str | None = None  # default: the system's temporary folder
    name: str = "worker"
    verify_models: bool = True
    env: dict[str, str] = field(default_factory=dict)


def set_threads(threads: int | None) -> None:
    """Limit the CPU threads of this process's math libraries (call before importing torch; it is
    applied to torch too when torch is already loaded)."""
    if not threads:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class ItemRunner:
    """Runs items of one batch in this process (see the module docstring)."""

    def __init__(self, config: WorkerConfig):
        os.environ.update(config.env)
        set_threads(config.threads)
        from .. import format as graph_format
        from ..session import Session

        self.config = config
        self.options = RunOptions(device=config.device, dtype=config.dtype,
                                  models_dirs=tuple(Path(p) for p in config.models_dirs))
        self.session = Session(options=self.options)
        self.session.registry  # load the node packs now, not during the first item
        self.graph = graph_format.from_data(config.graph)
        self._base = {nid: dict(n.params) for nid, n in self.graph.nodes.items()}
        self._staging = Path(tempfile.mkdtemp(prefix=f"nodegraph-batch-{os.getpid()}-",
                                              dir=config.staging_root))
        self._touched: set[tuple[str, str]] = set()
        self._resolver: Callable[[str], Path | None] | None = None
        self._hasher: Any = None
        self.items_run = 0
        self.model_loads = 0  # model files read by this worker's runs

    def info(self) -> dict[str, Any]:
        """Who this worker is: process id, host, thread count (for progress and logs)."""
        torch = sys.modules.get("torch")
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "threads": torch.get_num_threads() if torch is not None else self.config.threads}
        if "CUDA_VISIBLE_DEVICES" in self.config.env:
            info["gpu"] = self.config.env["CUDA_VISIBLE_DEVICES"]
        return info

    def close(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)

    # -- one item ---------------------------------------------------------------------------
    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        """Run one item: ``task`` has ``index``, ``key``, ``overrides`` and ``models``."""
        start = time.perf_counter()
        folder = self._staging / f"{int(task['index']):06d}-{task.get('attempt', 1)}"
        try:
            mismatch = self._check_models(task.get("models") or {})
            if mismatch:
                return {"status": "error", "kind": "model_mismatch", "error": mismatch}
            self._apply(task.get("overrides") or [])
            set_threads(self.config.threads)
            result = self.session.run(self.graph, out_dir=folder)
            self.model_loads += result.stats.model_loads
            outputs = _collect(result.ui, folder)
            set_threads(self.config.threads)  # torch may have been imported by this item
        except (NodeExecutionError, GraphValidationError, UsageError) as exc:
            return self._error(_error_kind(exc), _describe(exc), exc)
        except MemoryError as exc:
            return self._error("oom", f"out of memory: {exc}", exc)
        except Exception as exc:  # a bug outside the nodes: report it, do not kill the worker
            return self._error("internal", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", exc)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.items_run += 1
        torch = sys.modules.get("torch")
        return {"status": "ok", "outputs": outputs, "seconds": time.perf_counter() - start,
                "model_loads": self.model_loads,
                "threads": torch.get_num_threads() if torch is not None else None}

    def _error(self, kind: str, text: str, exc: BaseException) -> dict[str, Any]:
        """An error result; the models the failed run read before it stopped are counted too."""
        stats = getattr(exc, "stats", None)
        self.model_loads += stats.model_loads if stats is not None else 0
        return {"status": "error", "kind": kind, "error": text, "model_loads": self.model_loads}

    def _apply(self, overrides: list[list[Any]]) -> None:
        """Set this item's overrides; params only an earlier item set go back to the graph's."""
        touched = {(node_id, param) for node_id, param, _ in overrides}
        for node_id, param in self._touched - touched:
            base = self._base[node_id]
            if param in base:
                self.graph.set_param(node_id, param, base[param])
            else:
                self.graph.nodes[node_id].params.pop(param, None)
        for node_id, param, value in overrides:
            self.graph.set_param(node_id, param, value)
        self._touched = touched

    def _check_models(self, expected: dict[str, str]) -> str | None:
        """A message if a model file here differs from the one the coordinator hashed."""
        if not expected or not self.config.verify_models:
            return None
        from .items import ModelHasher, default_hash_cache, model_resolver

        if self._resolver is None:
            self._resolver = model_resolver(self.session.registry, self.options)
            self._hasher = ModelHasher(default_hash_cache())
        for name, sha in sorted(expected.items()):
            path = self._resolver(name)
            if path is None:
                return (f"model {name!r} is not in this worker's model folders on "
                        f"{socket.gethostname()}; copy it there (see docs/batch.md)")
            here = self._hasher.sha256(path)
            if here != sha:
                return (f"model {name!r} on {socket.gethostname()} ({path}) has sha256 {here[:12]}…, "
                        f"the coordinator's has {sha[:12]}…; copy the same file to every node")
        return None



def _collect(ui: dict[str, dict[str, Any]], folder: Path) -> list[Output]:
    """The files output nodes wrote into the staging folder, per node (by id) and element."""
    outputs = []
    root = folder.resolve()
    for node_id in sorted(ui, key=id_sort_key):
        element = 0
        for entry in ui[node_id].get("files", []) or []:
            path = Path(entry).resolve()
            if not path.is_relative_to(root) or not path.is_file():
                continue  # e.g. a preview in a temporary folder: not an output of the batch
            outputs.append(Output(node_id, element, path.suffix.lower(), path.read_bytes()))
            element += 1
    return outputs


def _error_kind(exc: BaseException) -> str:
    cause = getattr(exc, "error", None) or exc.__cause__
    name = type(cause).__name__ if cause is not None else ""
    if isinstance(cause, MemoryError) or "OutOfMemory" in name:
        return "oom"
    return "graph"


def _describe(exc: BaseException) -> str:
    return str(exc)
