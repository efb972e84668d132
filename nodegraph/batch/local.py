"""Local worker processes: ``--workers N`` on one machine, no Ray needed.

Each worker is a fresh ``spawn``-ed Python process holding one :class:`~.worker.ItemRunner`,
talking to the coordinator over a pipe: it says ``ready``, then answers each item with its result.
Workers ignore Ctrl-C (the coordinator decides when to stop), exit when the coordinator's end of
the pipe closes, and on Linux are killed by the kernel if the coordinator process dies, so no
worker outlives a killed batch.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection, wait
from typing import Any

from .coordinator import ItemFinished, PoolEvent, WorkerLost, WorkerReady
from .worker import ItemRunner, WorkerConfig


def _die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def worker_main(conn: Connection, config: WorkerConfig, parent_pid: int) -> None:
    """Entry point of a local worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        return
    try:
        runner = ItemRunner(config)
    except BaseException as exc:  # report why, then exit: the coordinator decides what next
        try:
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        finally:
            return
    try:
        conn.send(("ready", runner.info()))
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            result = runner.run(task)
            conn.send(("result", int(task["index"]), result))
    except (BrokenPipeError, EOFError, OSError):
        return
    finally:
        runner.close()


class _Proc:
    __slots__ = ("name", "process", "conn", "index", "ready", "reason")

    def __init__(self, name: str, process: Any, conn: Connection):
        self.name = name
        self.process = process
        self.conn = conn
        self.index: int | None = None
        self.ready = False
        self.reason = ""  # why it failed to start, if it said so


def visible_gpus() -> list[str]:
    """The CUDA GPUs this machine offers its processes, without importing torch:
    ``CUDA_VISIBLE_DEVICES`` if set, else what ``nvidia-smi -L`` lists (none without it)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


class LocalPool:
    """Worker processes on this machine (see the module docstring). With ``gpus`` (CUDA device
    ids), each worker sees one of them only (``CUDA_VISIBLE_DEVICES``), the least used by the
    live workers — a replacement takes the GPU its dead predecessor had."""

    def __init__(self, config: WorkerConfig, *, gpus: list[str] | None = None,
                 start_method: str = "spawn"):
        self.config = config
        self.gpus = list(gpus or [])
        self.ctx = mp.get_context(start_method)
        self.procs: dict[str, _Proc] = {}
        self.gpu_of: dict[str, str] = {}
        self._count = 0

    def _next_gpu(self) -> str | None:
        if not self.gpus:
            return None
        used = [self.gpu_of[n] for n in self.procs if n in self.gpu_of]
        return min(self.gpus, key=lambda g: (used.count(g), self.gpus.index(g)))

    def start_worker(self) -> str:
        self._count += 1
        name = f"local-{self._count}"
        parent, child = self.ctx.Pipe(duplex=True)
        config = WorkerConfig(**{**self.config.__dict__, "name": name})
        gpu = self._next_gpu()
        if gpu is not None:
            config.env = {**config.env, "CUDA_VISIBLE_DEVICES": gpu}
            self.gpu_of[name] = gpu
        process = self.ctx.Process(target=worker_main, args=(child, config, os.getpid()),
                                   name=f"nodegraph-batch-{name}", daemon=True)
        process.start()
        child.close()
        self.procs[name] = _Proc(name, process, parent)
        return name

    def pids(self) -> dict[str, int]:
        """Worker name → process id, for the live workers."""
        return {n: p.process.pid for n, p in self.procs.items() if p.process.pid is not None}

    def submit(self, worker: str, task: dict[str, Any]) -> None:
        proc = self.procs[worker]
        proc.index = int(task["index"])
        try:
            proc.conn.send(task)
        except (BrokenPipeError, OSError):
            pass  # its death shows up in the next wait()

    def wait(self, timeout: float) -> list[PoolEvent]:
        if not self.procs:
            return []
        by_handle: dict[Any, _Proc] = {}
        for proc in self.procs.values():
            by_handle[proc.conn] = proc
            by_handle[proc.process.sentinel] = proc
        events: list[PoolEvent] = []
        dead: set[str] = set()
        for handle in wait(list(by_handle), timeout):
            proc = by_handle[handle]
            if proc.name in dead or proc.name not in self.procs:
                continue
            if not self._drain(proc, events):
                dead.add(proc.name)
        for name in dead:
            proc = self.procs.pop(name)
            proc.process.join(timeout=5)
            code = proc.process.exitcode
            reason = (f"worker process {proc.process.pid} exited "
                      + (f"by signal {-code}" if code is not None and code < 0 else f"with code {code}"))
            events.append(WorkerLost(name, proc.reason or reason, proc.index,
                                     started=proc.ready))
            proc.conn.close()
        return events

    def _drain(self, proc: _Proc, events: list[PoolEvent]) -> bool:
        """Read every message waiting on a worker's pipe; False once the worker is gone."""
        try:
            while proc.conn.poll():
                message = proc.conn.recv()
                kind = message[0]
                if kind == "ready":
                    proc.ready = True
                    events.append(WorkerReady(proc.name, message[1]))
                elif kind == "result":
                    proc.index = None
                    events.append(ItemFinished(proc.name, message[1], message[2]))
                elif kind == "failed":
                    proc.reason = f"worker failed to start: {message[1]}"
        except (EOFError, OSError):
            return False
        return proc.process.is_alive()

    def close(self, *, kill: bool = False) -> None:
        for proc in self.procs.values():
            if not kill:
                try:
                    proc.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        for proc in self.procs.values():
            if not kill:
                proc.process.join(timeout=30)
            if proc.process.is_alive():
                proc.process.kill()
                proc.process.join(timeout=5)
            proc.conn.close()
        self.procs.clear()



class InlinePool:
    """One "worker" that is this very process (``workers=0``): items run one after another in
    the coordinator, with no isolation. For debugging, and as the single-process reference the
    tests compare the distributed runs with."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.runner: ItemRunner | None = None
        self._events: list[PoolEvent] = []

    def start_worker(self) -> str:
        name = "inline"
        self.runner = ItemRunner(WorkerConfig(**{**self.config.__dict__, "name": name}))
        self._events.append(WorkerReady(name, self.runner.info()))
        return name

    def submit(self, worker: str, task: dict[str, Any]) -> None:
        assert self.runner is not None
        self._events.append(ItemFinished(worker, int(task["index"]), self.runner.run(task)))

    def wait(self, timeout: float) -> list[PoolEvent]:
        events, self._events = self._events, []
        return events

    def close(self, *, kill: bool = False) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None
