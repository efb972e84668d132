"""A Pool whose workers are simulated in the test process, with scripted deaths and errors."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nodegraph.batch.coordinator import ItemFinished, PoolEvent, WorkerLost, WorkerReady
from nodegraph.batch.items import Item


def items(n: int) -> list[Item]:
    return [Item(i, f"key{i:02d}", (("2", "seed", i),)) for i in range(n)]


class FakePool:
    """Each submitted item finishes at the next ``wait()``, unless the script says otherwise:

    - ``deaths[index] = k``: the first k workers that run item ``index`` die while running it;
    - ``errors``: items whose graph raises (an "error" result);
    - ``start_failures``: the first n workers fail to start;
    - ``on_submit(pool, worker, task)``: called at each submit (e.g. to stop the coordinator).

    A worker "loads its model" at its first item, so ``model_loads`` reports 1 from then on.
    """

    def __init__(self, deaths: dict[int, int] | None = None, errors: set[int] | None = None,
                 start_failures: int = 0,
                 on_submit: Callable[[FakePool, str, dict[str, Any]], None] | None = None):
        self.deaths = dict(deaths or {})
        self.errors = set(errors or ())
        self.start_failures = start_failures
        self.on_submit = on_submit
        self.started: list[str] = []
        self.events: list[PoolEvent] = []
        self.runs: list[tuple[str, int, int]] = []  # (worker, index, attempt) as submitted
        self.alive: set[str] = set()
        self.closed = None

    def start_worker(self) -> str:
        name = f"w{len(self.started) + 1}"
        self.started.append(name)
        if len(self.started) <= self.start_failures:
            self.events.append(WorkerLost(name, "could not import the node packs", None, started=False))
        else:
            self.alive.add(name)
            self.events.append(WorkerReady(name, {"pid": 1000 + len(self.started)}))
        return name

    def submit(self, worker: str, task: dict[str, Any]) -> None:
        assert worker in self.alive, f"item {task['index']} given to dead worker {worker}"
        index = int(task["index"])
        self.runs.append((worker, index, task["attempt"]))
        if self.on_submit:
            self.on_submit(self, worker, task)
        if self.deaths.get(index, 0) > 0:
            self.deaths[index] -= 1
            self.alive.discard(worker)
            self.events.append(WorkerLost(worker, "node removed", index))
        elif index in self.errors:
            self.events.append(ItemFinished(worker, index, {
                "status": "error", "kind": "graph", "error": f"node 2 (Render) failed on {index}"}))
        else:
            self.events.append(ItemFinished(worker, index, {
                "status": "ok", "outputs": [], "seconds": 0.1, "model_loads": 1}))

    def wait(self, timeout: float) -> list[PoolEvent]:
        events, self.events = self.events, []
        return events

    def close(self, *, kill: bool = False) -> None:
        self.closed = "killed" if kill else "closed"
