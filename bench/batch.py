"""Benchmark of ``nodegraph batch``: items/s with 1 and 2 local workers, and what an item costs more
on the Ray path than on the local path.

    flock /tmp/ng-heavy.lock .venv/bin/python bench/batch.py [--items 16] [--repeats 3]

Graph: examples/demo.json when it and its model exist; otherwise examples/txt2img.json on a tiny
random SD1 checkpoint (the JSON says which). Throughput is measured in steady state — from the
moment every worker has finished its first item to the last item — so start-up (process, torch
import, model load, first-run warm-up) is left out; the time to the first item is printed apart. Local 1 worker (2 threads) and 2 workers
(1 thread each) share the 2 cores. The Ray overhead compares 1 Ray actor with 1 local worker, the
same threads, on a small item (64×64, 2 steps) where the per-item cost shows: the median gap
between consecutive finished items, Ray minus local. Runs are interleaved and repeated; medians.
The last line is JSON: ``items_per_s_1``, ``items_per_s_2``, ``ray_overhead_ms_per_item``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NODEGRAPH_TESTING", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback (read at import)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nodegraph import format as graph_format  # noqa: E402
from nodegraph.api import Session  # noqa: E402
from nodegraph.batch import run_batch  # noqa: E402
from nodegraph.context import RunOptions  # noqa: E402


def tiny_txt2img(root: Path, size: int, steps: int) -> object:
    """examples/txt2img.json on a tiny random SD1 checkpoint written into ``root``."""
    from nodes.sd.testing import write_random_checkpoint

    ckpt = root / "checkpoints" / "tiny-sd1.safetensors"
    if not ckpt.is_file():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        write_random_checkpoint(ckpt, "sd1", tiny=True)
    graph = graph_format.load(ROOT / "examples" / "txt2img.json")
    graph.set_param("4", "ckpt_name", ckpt.name)
    graph.set_param("3", "steps", steps)
    graph.set_param("5", "width", size)
    graph.set_param("5", "height", size)
    return graph


def workload(root: Path, session: Session) -> tuple[object, str]:
    """The graph whose throughput is measured, and what it is."""
    demo = ROOT / "examples" / "demo.json"
    if demo.is_file():
        graph = graph_format.load(demo)
        if not [p for p in session.validate(graph) if p.severity == "error"]:
            return graph, "examples/demo.json (the shipped demo model)"
    return (tiny_txt2img(root, 128, 4),
            "examples/txt2img.json on a tiny random SD1 checkpoint, 128x128, 4 steps, fp32 "
            "(the demo model is not there yet)")


def seed_sweep(graph: object, items: int) -> str:
    """``<id of the first KSampler>.seed=0:<items>``."""
    node = min((n for n in graph.nodes.values() if n.type == "KSampler"),  # type: ignore[attr-defined]
               key=lambda n: (len(n.id), n.id))
    return f"{node.id}.seed=0:{items}"


class Timeline:
    """Progress events with their arrival times."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict]] = []

    def __call__(self, event: dict) -> None:
        self.events.append((time.perf_counter(), event))

    def steady(self) -> list[float]:
        """Finish times of the items that ended after every worker had finished one (so that no
        torch import, model load or first-run warm-up is inside)."""
        done = [(t, e["worker"]) for t, e in self.events if e["event"] == "item_done"]
        first: dict[str, float] = {}
        for t, worker in done:
            first.setdefault(worker, t)
        warm = max(first.values())
        return [t for t, _ in done if t >= warm]

    def first_item(self) -> float:
        """Seconds from the start to the first finished item (start-up: process, imports, model)."""
        start = next(t for t, e in self.events if e["event"] == "start")
        return min(t for t, e in self.events if e["event"] == "item_done") - start


def timed(graph: object, session: Session, out: Path, items: int, **kw) -> Timeline:
    timeline = Timeline()
    result = run_batch(graph, out, [seed_sweep(graph, items)], session=session, on_event=timeline,
                       handle_sigint=False, **kw)
    assert result.complete, f"batch in {out} did not complete: {result.failed}"
    return timeline


def rate(timeline: Timeline) -> float:
    ts = timeline.steady()
    return (len(ts) - 1) / (ts[-1] - ts[0])


def gap(timeline: Timeline) -> float:
    ts = timeline.steady()
    return statistics.median(b - a for a, b in zip(ts, ts[1:]))


def start_ray() -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level="ERROR")


def stop_ray(children_before: set[int]) -> None:
    import ray

    ray.shutdown()
    time.sleep(1)
    for pid in _descendants(os.getpid()) - children_before:  # agents can outlive their raylet
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _descendants(root: int) -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process(root).children(recursive=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=16, help="items per throughput run")
    parser.add_argument("--small-items", type=int, default=24, help="items per overhead run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="nodegraph-bench-batch-"))
    session = Session(options=RunOptions(models_dirs=(tmp / "models",), dtype="fp32", device="cpu"))
    tiny = tiny_txt2img(tmp / "models", 64, 2)
    graph, described = workload(tmp / "models", session)
    runs = iter(range(10_000))

    def out() -> Path:
        return tmp / f"run{next(runs)}"

    print(f"graph: {described}; {args.items} items a run, {args.repeats} repeats", flush=True)
    timed(tiny, session, out(), 3, workers=1)  # warm-up: page cache, imports
    timed(graph, session, out(), 4, workers=1)
    before = _descendants(os.getpid())
    start_ray()
    r1, r2, local_gap, ray_gap, startups = [], [], [], [], {"local": [], "ray": []}
    try:
        for rep in range(args.repeats):
            t1 = timed(graph, session, out(), args.items, workers=1)
            t2 = timed(graph, session, out(), args.items, workers=2)
            lg = timed(tiny, session, out(), args.small_items, workers=1, threads=2)
            rg = timed(tiny, session, out(), args.small_items, ray="auto", workers=1,
                       worker_cpus=2, threads=2)
            r1.append(rate(t1))
            r2.append(rate(t2))
            local_gap.append(gap(lg))
            ray_gap.append(gap(rg))
            startups["local"].append(lg.first_item())
            startups["ray"].append(rg.first_item())
            print(f"repeat {rep + 1}: 1 worker {r1[-1]:.2f} items/s, 2 workers {r2[-1]:.2f} items/s; "
                  f"small item: local {1000 * local_gap[-1]:.1f} ms, ray {1000 * ray_gap[-1]:.1f} ms",
                  flush=True)
    finally:
        stop_ray(before)
    figures = {
        "graph": described,
        "items_per_s_1": round(statistics.median(r1), 3),
        "items_per_s_2": round(statistics.median(r2), 3),
        "speedup_2_over_1": round(statistics.median(r2) / statistics.median(r1), 3),
        "ray_overhead_ms_per_item": round(1000 * (statistics.median(ray_gap) - statistics.median(local_gap)), 2),
        "small_item_ms_local": round(1000 * statistics.median(local_gap), 2),
        "small_item_ms_ray": round(1000 * statistics.median(ray_gap), 2),
        "first_item_s_local": round(statistics.median(startups["local"]), 2),
        "first_item_s_ray": round(statistics.median(startups["ray"]), 2),
        "repeats": args.repeats,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
