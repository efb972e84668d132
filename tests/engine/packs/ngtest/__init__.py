"""Torch-free node types for the engine's tests (also loadable as the folder pack ``ngtest``).

``CALLS`` counts how often each node function ran, so tests can see what the cache skipped.
"""
from __future__ import annotations

import hashlib
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from nodegraph import (Absent, Boolean, Combo, Float, InputSpec, Int, NodeError, RunContext,
                       SocketType, String, hookimpl, node)

CALLS: Counter[str] = Counter()
SINK: list[Any] = []


class Blob:
    """Stands in for a tensor: has ``nbytes`` like numpy arrays and torch tensors."""

    def __init__(self, nbytes: int, tag: str = ""):
        self.nbytes = nbytes
        self.tag = tag


@node("Const", category="math", params=[Int("value", 0, min=-1000, max=1000)],
      outputs={"value": "INT"})
def const(value: int) -> int:
    CALLS["Const"] += 1
    return value


@node("Add", category="math", inputs={"a": "INT", "b": "INT"}, outputs={"sum": "INT"})
def add(a: int, b: int) -> int:
    CALLS["Add"] += 1
    return a + b


@node("AddOptional", category="math",
      inputs=[InputSpec("a", "INT"), InputSpec("b", "INT", optional=True)], outputs={"sum": "INT"})
def add_optional(a: int, b: int = 100) -> int:
    CALLS["AddOptional"] += 1
    return a + b


@node("Scale", category="math", inputs={"x": "INT"},
      params=[Float("factor", 1.0, min=0.0, max=10.0, step=0.5)], outputs={"value": "FLOAT"})
def scale(x: int, factor: float) -> float:
    CALLS["Scale"] += 1
    return x * factor


@node("Text", category="text", params=[String("text", "hello", multiline=True)],
      outputs={"text": "STRING"})
def text(text: str) -> str:
    CALLS["Text"] += 1
    return text


@node("Upper", category="text", params=[String("text", "abc"), Boolean("enabled", True)],
      outputs={"text": "STRING"})
def upper(text: str, enabled: bool) -> str:
    CALLS["Upper"] += 1
    return text.upper() if enabled else text


@node("Pick", category="text", params=[Combo("which", ["first", "second", "third"])],
      outputs={"text": "STRING"})
def pick(which: str) -> str:
    CALLS["Pick"] += 1
    return which


@node("Pair", category="math", params=[Int("value", 1)], outputs={"low": "INT", "high": "INT"})
def pair(value: int) -> tuple[int, int]:
    CALLS["Pair"] += 1
    return value - 1, value + 1


@node("Seeded", category="math",
      params=[Int("seed", 0, min=0, max=2**64 - 1, control_after_run="fixed"),
              Int("steps", 20, min=1, max=10000)],
      outputs={"value": "INT"})
def seeded(seed: int, steps: int) -> int:
    CALLS["Seeded"] += 1
    return seed * 1000 + steps


_counter = [0]


@node("Random", category="math", not_cacheable=True, outputs={"value": "INT"})
def random_value() -> int:
    CALLS["Random"] += 1
    _counter[0] += 1
    return _counter[0]


def _file_fingerprint(params: dict[str, Any]) -> str:
    return hashlib.sha256(Path(params["path"]).read_bytes()).hexdigest()


@node("ReadFile", category="io", params=[String("path", "")], outputs={"text": "STRING"},
      fingerprint=_file_fingerprint)
def read_file(path: str) -> str:
    CALLS["ReadFile"] += 1
    return Path(path).read_text()


@node("Fail", category="debug", inputs=[InputSpec("x", "*", optional=True)],
      params=[Boolean("fail", True)], outputs={"value": "INT"})
def fail(fail: bool, x: Any = None) -> int:
    CALLS["Fail"] += 1
    if fail:
        raise RuntimeError("boom: the test node failed on purpose")
    return 7


@node("Refuse", category="debug", params=[String("why", "the input is not usable")],
      outputs={"value": "INT"})
def refuse(why: str) -> int:
    """Fails on purpose, as a node does on bad input: its message says it all."""
    CALLS["Refuse"] += 1
    raise NodeError(why)


@node("Allocate", category="debug", params=[Int("gigabytes", 1, min=0)], outputs={"value": "INT"})
def allocate(gigabytes: int) -> int:
    """Fails as torch's CPU allocator does when asked for more memory than there is."""
    raise RuntimeError(f"[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate "
                       f"memory: you tried to allocate {gigabytes * 10**9} bytes. Error code 12")


@node("Partial", category="debug", params=[String("why", "there was nothing to give")],
      outputs={"value": "INT", "missing": "INT"})
def partial(why: str) -> tuple[int, Absent]:
    """Fills one output and leaves the other empty, saying why (as a checkpoint without a VAE does)."""
    CALLS["Partial"] += 1
    return 1, Absent(why)


@node("Steps", category="debug", inputs=[InputSpec("x", "*", optional=True)],
      params=[Int("steps", 5, min=1), Float("sleep", 0.0)], outputs={"value": "INT"})
def steps(steps: int, sleep: float, ctx: RunContext, x: Any = None) -> int:
    CALLS["Steps"] += 1
    for i in range(steps):
        if sleep:
            time.sleep(sleep)
        ctx.progress(i + 1, steps, preview=f"preview {i + 1}")
    return steps


@node("SelfInterrupt", category="debug", outputs={"value": "INT"})
def self_interrupt(ctx: RunContext) -> int:
    """Acts like a user pressing Ctrl-C during a long node."""
    os.kill(os.getpid(), signal.SIGINT)
    for i in range(200):
        time.sleep(0.005)
        ctx.progress(i + 1, 200)
    return 0


@node("MakeBlob", category="debug", params=[Int("nbytes", 100), String("tag", "")],
      outputs={"blob": "BLOB"})
def make_blob(nbytes: int, tag: str) -> Blob:
    CALLS["MakeBlob"] += 1
    return Blob(nbytes, tag)


@node("Double", category="math", inputs={"x": "INT"}, outputs={"value": "INT"})
def double(x: int) -> int:
    CALLS["Double"] += 1
    return 2 * x


@node("BadReturn", category="debug", outputs={"a": "INT", "b": "INT"})
def bad_return() -> int:
    return 1


@node("Options", category="debug", outputs={"value": "STRING"}, not_cacheable=True)
def options(ctx: RunContext) -> str:
    return f"{ctx.options.device}|{ctx.options.output_dir}|{ctx.node_id}"


@node("Sink", category="output", output_node=True,
      inputs=[InputSpec("value", "*"), InputSpec("extra", "*", optional=True)])
def sink(value: Any, ctx: RunContext, extra: Any = None) -> None:
    CALLS["Sink"] += 1
    SINK.append(value)
    ctx.ui["values"] = [value]


@node("KSampler", category="sampling", inputs=[InputSpec("model", "BLOB", optional=True)],
      params=[Int("seed", 0, min=0, max=2**64 - 1, control_after_run="randomize"),
              Int("steps", 20, min=1, max=10000), Float("cfg", 8.0, min=0.0, max=100.0),
              Combo("sampler_name", ["euler", "euler_ancestral", "heun", "dpmpp_2m"]),
              Combo("scheduler", ["normal", "karras", "exponential"]),
              Float("denoise", 1.0, min=0.0, max=1.0)],
      outputs={"LATENT": "BLOB"})
def ksampler(seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
             denoise: float, model: Any = None) -> Blob:
    """A stand-in with KSampler's params (for messages that read like the real ones)."""
    CALLS["KSampler"] += 1
    return Blob(steps, f"{seed}/{sampler_name}")


NODES = [const, add, add_optional, scale, text, upper, pick, pair, seeded, random_value, read_file,
         fail, refuse, allocate, partial, steps, self_interrupt, make_blob, double, bad_return, options,
         sink, ksampler]


@hookimpl
def nodegraph_register_types() -> list[SocketType]:
    return [SocketType("BLOB", "#123456", "an opaque object with nbytes")]


@hookimpl
def nodegraph_register_nodes() -> list[Any]:
    return NODES
