"""The coordinator's workers as Ray actors: ``--ray ADDRESS`` fans a batch out over a cluster.

Ray is an optional extra (``pip install 'nodegraph[ray]'``); without it :func:`require_ray`
raises a UsageError that says how to install it. Each actor holds one
:class:`~.worker.ItemRunner` — the ordinary engine, its process-wide cache, the models read from
its node's own model folders (nothing big goes through Ray's object store: an item's task is a
few hundred bytes, its answer the output files). Actors are spread over the nodes, are never
restarted by Ray (``max_restarts=0``): when one dies, with its node or alone, the coordinator
re-sends its item to a live actor and starts a replacement wherever Ray finds room.
"""
from __future__ import annotations

import itertools
import os
import socket
import sys
from typing import Any
from urllib.parse import urlparse

from ..errors import UsageError
from .coordinator import ItemFinished, PoolEvent, WorkerLost, WorkerReady
from .worker import ItemRunner, WorkerConfig

INSTALL_HINT = ("Ray is not installed. Install the optional extra: pip install 'nodegraph[ray]' "
                "(or pip install 'ray[default]'), on this machine and on every node of the "
                "cluster; or run without --ray (--workers N uses local processes).")


def require_ray() -> Any:
    """The ``ray`` module, or a UsageError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError(f"{INSTALL_HINT} ({exc})") from None
    return ray


class RayWorker:
    """The actor body: one ItemRunner (made into a Ray actor class by :class:`RayPool`)."""

    def __init__(self, config: WorkerConfig):
        self.runner = ItemRunner(config)

    def info(self) -> dict[str, Any]:
        import ray

        info = self.runner.info()
        info["node"] = ray.get_runtime_context().get_node_id()
        return info

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        return self.runner.run(task)


def _is_loopback(address: str) -> bool:
    if address in ("local", "auto"):
        return False
    host = urlparse(address if "://" in address else f"ray://{address}").hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def _loopback_only() -> None:
    """Make Ray resolve "this machine" to 127.0.0.1. Without it, ``ray.init`` may rewrite a
    loopback address to the machine's external address and wait for a GCS that is not listening
    there. Ray reads the switch when it is imported; if it already was, set its constant too."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        constants.ENABLE_RAY_CLUSTER = False


def _reachable(address: str) -> str | None:
    """None if a plain ``host:port`` address accepts connections, else why not."""
    if "://" in address or address in ("auto", "local"):
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return f"{address!r} is not host:port"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        return f"nothing answers at {address} ({exc.strerror or exc})"
    return None


def connect(address: str) -> bool:
    """Connect this process to the cluster at ``address`` unless already connected; returns True
    if this call connected (and the caller should disconnect)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    loopback = _is_loopback(address)
    if loopback:
        _loopback_only()
    ray = require_ray()
    if ray.is_initialized():
        return False
    why = _reachable(address)
    if why is not None:
        raise UsageError(f"cannot connect to the Ray cluster at {address!r}: {why}. Is it running "
                         "(ray status on the head node)? See docs/batch.md")
    kwargs: dict[str, Any] = {"address": address, "log_to_driver": False,
                              "logging_level": "ERROR", "configure_logging": True}
    if loopback:
        kwargs["_node_ip_address"] = "127.0.0.1"
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot connect to the Ray cluster at {address!r}: {exc}. See "
                         "docs/batch.md") from None
    return True


class RayPool:
    """Ray actors as the coordinator's workers (see the module docstring)."""

    def __init__(self, config: WorkerConfig, *, num_cpus: float = 1, num_gpus: float = 0,
                 resources: dict[str, float] | None = None):
        ray = require_ray()
        self.ray = ray
        self.config = config
        self.actor_class = ray.remote(RayWorker).options(
            num_cpus=num_cpus, num_gpus=num_gpus, resources=resources or None,
            max_restarts=0, max_task_retries=0, scheduling_strategy="SPREAD")
        self.actors: dict[str, Any] = {}
        self.pending: dict[Any, tuple[str, str, int | None]] = {}  # ref -> (worker, what, index)
        self.busy: dict[str, int] = {}
        self._names = itertools.count(1)

    def start_worker(self) -> str:
        name = f"ray-{next(self._names)}"
        config = WorkerConfig(**{**self.config.__dict__, "name": name})
        actor = self.actor_class.remote(config)
        self.actors[name] = actor
        self.pending[actor.info.remote()] = (name, "info", None)
        return name

    def submit(self, worker: str, task: dict[str, Any]) -> None:
        index = int(task["index"])
        self.busy[worker] = index
        self.pending[self.actors[worker].run.remote(task)] = (worker, "run", index)

    def wait(self, timeout: float) -> list[PoolEvent]:
        if not self.pending:
            return []
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        if ready:  # collect whatever else is ready too
            more, _ = self.ray.wait([r for r in self.pending if r not in ready],
                                    num_returns=len(self.pending) - len(ready), timeout=0)
            ready = ready + more
        events: list[PoolEvent] = []
        for ref in ready:
            worker, what, index = self.pending.pop(ref)
            if worker not in self.actors:
                continue  # already reported lost
            try:
                value = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as exc:
                events.append(self._lost(worker, _short_reason(exc), started=what == "run"))
                continue
            except self.ray.exceptions.RayError as exc:
                if what == "info":
                    events.append(self._lost(worker, _short_reason(exc), started=False))
                else:  # the task itself broke outside the graph (e.g. serialisation)
                    self.busy.pop(worker, None)
                    events.append(ItemFinished(worker, index, {
                        "status": "error", "kind": "internal", "error": _short_reason(exc)}))
                continue
            if what == "info":
                events.append(WorkerReady(worker, value))
            else:
                self.busy.pop(worker, None)
                events.append(ItemFinished(worker, index, value))
        return events

    def _lost(self, worker: str, reason: str, *, started: bool) -> WorkerLost:
        actor = self.actors.pop(worker)
        index = self.busy.pop(worker, None)
        for ref, (w, _, _) in list(self.pending.items()):
            if w == worker:
                del self.pending[ref]
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:
            pass
        return WorkerLost(worker, reason, index, started=started)

    def close(self, *, kill: bool = False) -> None:
        del kill  # actors hold no state worth saving: results were already returned
        for actor in self.actors.values():
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self.actors.clear()
        self.pending.clear()
        self.busy.clear()


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {first}"


def cluster_gpus() -> float:
    """GPUs in the connected cluster (0 without)."""
    ray = require_ray()
    return float(ray.cluster_resources().get("GPU", 0))


def cluster_nodes() -> int:
    """Live nodes in the connected cluster that can run actors (have CPUs)."""
    ray = require_ray()
    return sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0)
