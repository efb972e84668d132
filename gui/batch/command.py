"""The command line the Batch dialog runs: ``python -m nodegraph batch SNAPSHOT --out DIR --sweep …
--progress json`` for a request, the child's environment, and the graph snapshot it reads."""
from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nodegraph
from nodegraph import format as graph_format
from nodegraph.context import DEVICES, DTYPES
from nodegraph.graph import Graph

from .sweeps import SweepRow

PACKAGE_ROOT = Path(nodegraph.__file__).resolve().parent.parent
"""The folder that holds the ``nodegraph`` package: put on the child's PYTHONPATH so that
``python -m nodegraph`` finds this very NodeGraph even when it is not installed."""


@dataclass
class BatchRequest:
    """What the dialog asks ``nodegraph batch`` for."""

    graph_file: Path
    out_dir: Path
    sweeps: Sequence[SweepRow] = ()
    workers: int = 1
    ray: str | None = None
    resume: bool = False
    models_dirs: Sequence[Path] = ()
    device: str = "auto"
    dtype: str = "auto"
    base_dir: Path | None = None  # where a relative @file is looked up


def build_argv(request: BatchRequest, python: str = sys.executable) -> list[str]:
    """``[python, "-m", "nodegraph", "batch", GRAPH, "--out", DIR, "--sweep", …, "--progress",
    "json"]`` for a request; paths absolute, ``--workers N`` or ``--ray ADDRESS``."""
    argv = [python, "-m", "nodegraph", "batch", str(Path(request.graph_file).absolute()),
            "--out", str(Path(request.out_dir).expanduser().absolute())]
    for row in request.sweeps:
        argv += ["--sweep", row.argument(request.base_dir)]
    if request.ray:
        argv += ["--ray", request.ray.strip()]
    else:
        argv += ["--workers", str(int(request.workers))]
    if request.resume:
        argv.append("--resume")
    for folder in request.models_dirs:
        argv += ["--models", str(Path(folder).expanduser().absolute())]
    if request.device != "auto" and request.device in DEVICES:
        argv += ["--device", request.device]
    if request.dtype != "auto" and request.dtype in DTYPES:
        argv += ["--dtype", request.dtype]
    argv += ["--progress", "json"]
    return argv


def child_environment(base: dict[str, str]) -> dict[str, str]:
    """The child's environment: ``base`` with this NodeGraph first on PYTHONPATH, unbuffered UTF-8
    output."""
    env = dict(base)
    paths = [str(PACKAGE_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def write_snapshot(graph: Graph, folder: Path, stem: str) -> Path:
    """Write the graph file (the engine's deterministic text, the batch writer's atomic write) as
    ``folder/STEM.json``. The manifest compares the *canonical* graph (types, params, modes,
    links), so a snapshot of an unchanged graph resumes its batch whatever moved on the canvas."""
    from nodegraph.batch.writer import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem or 'untitled'}.json"
    atomic_write(path, graph_format.dumps(graph).encode("utf-8"), replace=True)
    return path


def default_out_dir(output_dir: str | os.PathLike[str], graph_path: Path | None) -> Path:
    """``OUTPUT/batch-<graph stem>`` (``batch-untitled`` for a graph never saved), absolute."""
    stem = graph_path.stem if graph_path is not None else "untitled"
    return (Path(output_dir).expanduser() / f"batch-{stem}").absolute()


def shown_command(argv: Sequence[str]) -> str:
    """``nodegraph batch GRAPH --out …`` for the log: the argv after ``python -m nodegraph``,
    arguments with spaces or quotes quoted."""
    return "nodegraph " + " ".join(_quote(a) for a in argv[3:])


def _quote(arg: str) -> str:
    return arg if arg and not re.search(r"[\s\"'$`\\]", arg) else json.dumps(arg, ensure_ascii=False)
