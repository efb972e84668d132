"""Executor overhead on 1000-node graphs of trivial nodes.

For a chain and for a random DAG (1000 nodes each) it measures:
  - first run (fresh cache, graph never seen): microseconds per node;
  - fully cached re-run: total milliseconds;
  - validation: total milliseconds;
and, as the reference measured in the same run, calling the same node functions directly in a
plain topological loop (the floor any executor pays). Chain and DAG samples are interleaved,
two warm-up rounds are dropped, and each figure is the median of 25 samples. Times are the CPU
time of this process: the machines this runs on are shared, and the wall time of a 20 ms loop
jumps whenever another process takes the core; on an idle machine both are the same (the script
prints the ratio of total wall to CPU time so you can see how busy the machine was).

Targets (issue 2): first run <= 50 us/node, cached re-run <= 5 ms, validation <= 20 ms.
The last line printed is one JSON object.

``--branches`` instead measures whether running two independent branches on threads would help
(a "model load" — reading a 300 MB file into a tensor — beside a "text encode" — matmuls), the
question behind the executor running nodes one at a time. Needs torch.
"""
from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodegraph import Graph, InputSpec, Int, Registry, node  # noqa: E402
from nodegraph.executor import Executor, OutputCache  # noqa: E402
from nodegraph.validate import validate  # noqa: E402

N = 1000
REPEATS = 25


@node("Const", params=[Int("value", 1)], outputs={"value": "INT"})
def const(value: int) -> int:
    return value


@node("Inc", inputs={"x": "INT"}, params=[Int("step", 1, min=-100, max=100)],
      outputs={"value": "INT"})
def inc(x: int, step: int) -> int:
    return x + step


def _sum(a: int, step: int, b: int = 0) -> int:
    return a + b + step


SUM_INPUTS = [InputSpec("a", "INT"), InputSpec("b", "INT", optional=True)]
sum_node = node("Sum", inputs=SUM_INPUTS, params=[Int("step", 1)], outputs={"value": "INT"})(_sum)
sum_out = node("SumOut", inputs=SUM_INPUTS, params=[Int("step", 1)], outputs={"value": "INT"},
               output_node=True)(_sum)


@node("Sink", inputs={"value": "INT"}, output_node=True)
def sink(value: int) -> None:
    return None


def registry() -> Registry:
    reg = Registry()
    for spec in (const, inc, sum_node, sum_out, sink):
        reg.add_node(spec)
    return reg


def chain_graph() -> Graph:
    g = Graph()
    prev = g.add_node("Const", {"value": 0})
    for _ in range(N - 2):
        cur = g.add_node("Inc", {"step": 1})
        g.connect(prev, "value", cur, "x")
        prev = cur
    g.connect(prev, "value", g.add_node("Sink"), "value")
    return g


def dag_graph(seed: int = 0) -> Graph:
    """Node i takes one or two inputs from random earlier nodes; nodes nobody consumes are output
    nodes, so every node is needed."""
    rng = random.Random(seed)
    sources: list[list[int]] = [[]]
    for i in range(1, N):
        k = min(i, rng.choice((1, 2)))
        sources.append(rng.sample(range(max(0, i - 50), i), k) if i > 1 else [0])
    consumed = {s for srcs in sources for s in srcs}
    g = Graph()
    g.add_node("Const", {"value": 1}, id="0")
    for i in range(1, N):
        g.add_node("Sum" if i in consumed else "SumOut", {"step": i % 7}, id=str(i))
    for i, srcs in enumerate(sources):
        for name, src in zip(("a", "b"), srcs):
            g.connect(str(src), "value", str(i), name)
    return g


def direct_loop(graph: Graph, reg: Registry, order: list[str]) -> None:
    """The reference: call each node's function in order, passing values by hand."""
    values: dict[str, object] = {}
    for nid in order:
        n = graph.nodes[nid]
        spec = reg.nodes[n.type]
        kwargs = dict(n.params)
        for name, link in graph.inputs_of(nid).items():
            kwargs[name] = values[link.src]
        values[nid] = spec.function(**kwargs)


WALL: list[float] = []  # wall-clock time of every timed call, for the comparison line
CPU = [0.0]


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds this process spent in ``fn`` (see the module docstring); wall time is kept too."""
    gc.disable()
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        c1, w1 = time.process_time(), time.perf_counter()
        WALL.append(w1 - w0)
        CPU[0] += c1 - c0
        return c1 - c0
    finally:
        gc.enable()


def sample(build: Callable[[], Graph], reg: Registry) -> dict[str, float]:
    """One measurement of each figure on a fresh graph and a fresh executor and cache."""
    g = build()
    ex = Executor(reg, OutputCache())
    t_first = timed(lambda: ex.run(g))
    t_cached = timed(lambda: ex.run(g))
    t_valid = timed(lambda: validate(g, reg))
    order = ex.plan(g)
    t_direct = timed(lambda: direct_loop(g, reg, order))
    g2 = build()
    t_events = timed(lambda: Executor(reg, OutputCache()).run(g2, on_event=lambda e: None))
    assert not [p for p in validate(g, reg) if p.severity == "error"]
    return {"first_us_per_node": t_first / N * 1e6, "cached_rerun_ms": t_cached * 1e3,
            "validate_ms": t_valid * 1e3, "direct_us_per_node": t_direct / N * 1e6,
            "events_us_per_node": t_events / N * 1e6}


def report(name: str, samples: list[dict[str, float]]) -> dict[str, float]:
    out = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    print(f"{name:5s}: first run {out['first_us_per_node']:6.1f} us/node "
          f"(direct calls {out['direct_us_per_node']:.1f} us/node, "
          f"x{out['first_us_per_node'] / out['direct_us_per_node']:.0f}); "
          f"cached re-run {out['cached_rerun_ms']:.2f} ms; validate {out['validate_ms']:.2f} ms; "
          f"first run with an event callback {out['events_us_per_node']:.1f} us/node")
    return out


def main() -> None:
    reg = registry()
    chains, dags = [], []
    for i in range(REPEATS + 2):  # interleaved; the first two rounds warm up
        c, d = sample(chain_graph, reg), sample(dag_graph, reg)
        if i >= 2:
            chains.append(c)
            dags.append(d)
    chain, dag = report("chain", chains), report("dag", dags)
    print(f"(wall time / CPU time over all timed calls: {sum(WALL) / max(CPU[0], 1e-9):.2f})")
    result = {
        "chain_us_per_node": round(chain["first_us_per_node"], 2),
        "cached_rerun_ms": round(chain["cached_rerun_ms"], 3),
        "validate_ms": round(chain["validate_ms"], 3),
        "dag_us_per_node": round(dag["first_us_per_node"], 2),
        "dag_cached_rerun_ms": round(dag["cached_rerun_ms"], 3),
        "dag_validate_ms": round(dag["validate_ms"], 3),
        "chain_direct_us_per_node": round(chain["direct_us_per_node"], 2),
        "dag_direct_us_per_node": round(dag["direct_us_per_node"], 2),
        "chain_with_events_us_per_node": round(chain["events_us_per_node"], 2),
    }
    print(json.dumps(result))


def branches() -> None:
    """Sequential vs two threads for two independent branches (interleaved, medians)."""
    import os
    import tempfile
    import threading

    import torch

    path = Path(tempfile.gettempdir()) / "nodegraph_bench_weights.bin"
    if not path.exists() or path.stat().st_size != 300 << 20:
        path.write_bytes(os.urandom(300 << 20))
    weights = torch.randn(768, 768)

    def load_like() -> None:
        torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.float16).float()

    def encode_like() -> None:
        x = torch.randn(154, 768)
        for _ in range(400):
            x = torch.tanh(x @ weights)

    def sequential() -> None:
        load_like()
        encode_like()

    def threaded() -> None:
        threads = [threading.Thread(target=load_like), threading.Thread(target=encode_like)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    seq, par, load, enc = [], [], [], []
    for i in range(9):
        for fn, out in ((sequential, seq), (threaded, par), (load_like, load), (encode_like, enc)):
            t = timed(fn)
            if i >= 2:
                out.append(t)
    med = statistics.median
    print(f"torch threads {torch.get_num_threads()}: load {med(load):.3f} s, encode "
          f"{med(enc):.3f} s; one after the other {med(seq):.3f} s, on two threads "
          f"{med(par):.3f} s (ideal overlap {max(med(load), med(enc)):.3f} s)")
    print(json.dumps({"branch_thread_speedup": round(med(seq) / med(par), 3)}))


if __name__ == "__main__":
    branches() if "--branches" in sys.argv[1:] else main()
