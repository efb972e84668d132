"""Batch runs: a graph's seed/prompt/param sweeps on local worker processes or a Ray cluster,
resumable, every output written exactly once.

    from nodegraph.batch import run_batch
    result = run_batch("graph.json", "out/sweep", ["3.seed=0:100", "Positive.text=@prompts.txt"],
                       workers=2)

See docs/batch.md. Nothing here imports torch or Ray at import time.
"""
from __future__ import annotations

from .coordinator import BatchAborted
from .job import BatchResult, run_batch
from .manifest import ResumeRefused
from .sweeps import Sweep, parse_sweep

__all__ = ["BatchAborted", "BatchResult", "ResumeRefused", "Sweep", "parse_sweep", "run_batch"]
