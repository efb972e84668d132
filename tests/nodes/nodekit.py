"""Helpers of the node tests (imported as ``nodekit``): run options, a stand-in run context, CLI runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from nodegraph import Graph, RunOptions

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ("sd1", "sd2", "sdxl")
UPSCALE_MODEL = "compact-2x.safetensors"


def options_for(models_dir: Path, out_dir: Path | None = None, **kw: Any) -> RunOptions:
    kw.setdefault("device", "cpu")
    kw.setdefault("dtype", "fp32")
    return RunOptions(output_dir=out_dir or Path("output"), models_dirs=(models_dir,), **kw)


class FakeContext:
    """What a node function sees as ``ctx`` when a test calls it directly: options, ui, progress log."""

    def __init__(self, options: RunOptions, graph: Graph | None = None, stop_after: int | None = None):
        import logging

        self.options = options
        self.graph = graph
        self.ui: dict[str, Any] = {}
        self.log = logging.getLogger("test")
        self.node_id, self.node_type = "1", "Test"
        self.progress_calls: list[tuple[int, int, Any]] = []
        self.stop_after = stop_after

    def check_interrupt(self) -> None:
        pass

    def progress(self, step: int, total: int, preview: Any = None) -> None:
        from nodegraph import Interrupted

        self.progress_calls.append((step, total, preview))
        if self.stop_after is not None and len(self.progress_calls) >= self.stop_after:
            raise Interrupted(self.node_id)


def env_for_cli(**extra: str) -> dict[str, str]:
    """Environment of a ``python -m nodegraph`` subprocess: one thread, testing mode."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NODEGRAPH_TESTING": "1"})
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """``python -m nodegraph ARGS`` in a subprocess (text output captured, never raises)."""
    return subprocess.run([sys.executable, "-m", "nodegraph", *args], cwd=cwd or ROOT, env=env_for_cli(**env),
                          capture_output=True, text=True, timeout=300)
