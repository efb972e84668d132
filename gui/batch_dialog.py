"""The editor's "Batch…" dialog: build sweeps of the open graph, run ``nodegraph batch`` in a child
process and follow its JSON progress (docs/batch.md, "From the editor").

The dialog snapshots the document's graph (no need to save it first), starts
``python -m nodegraph batch SNAPSHOT --out DIR --sweep … --progress json`` with QProcess, and reads
the events it prints on stdout. Stop sends SIGINT (running items finish, the folder stays
resumable); a second Stop kills the batch. Closing the dialog or its window while a batch runs
asks first and stops the batch — no process outlives the editor.

What does not need Qt is plain Python, tested directly:

- :class:`SweepRow`, :func:`count_items` — a table row, and the grid's size computed with the
  engine's own sweep parser (``nodegraph.batch.sweeps``), errors per row;
- :class:`BatchRequest`, :func:`build_argv` — the command line the dialog runs;
- :class:`LineBuffer`, :func:`parse_event` — bytes of a stream → complete lines → events;
- :class:`BatchState` — the events → counters, workers and log messages the dialog shows;
- :func:`exit_summary` — the exit code (and what stderr said) → one sentence.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QProcess, QProcessEnvironment, Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QButtonGroup, QCheckBox, QComboBox,
                               QDialog, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QListView, QListWidget,
                               QListWidgetItem, QMessageBox, QProgressBar, QPushButton,
                               QRadioButton, QSpinBox, QSplitter, QTableWidget,
                               QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

import nodegraph
from nodegraph import format as graph_format
from nodegraph.api import Session
from nodegraph.context import DEVICES, DTYPES, RunOptions
from nodegraph.errors import UsageError
from nodegraph.graph import Graph, GraphChange, Node, id_sort_key
from nodegraph.registry import Registry

from . import theme

SEED_PARAMS = ("seed", "noise_seed")
"""Params a new sweep table starts with (the first node that has one): KSampler.seed,
RandomNoise.noise_seed, …"""
DEFAULT_SEED_SPEC = "0:8"
LIVE_CHECK_LIMIT = 200_000
"""A range with more values than this is counted arithmetically while the user types, and only its
first and last values go through the param's parser and limits (the CLI checks every value)."""
MANIFEST = "manifest.json"
STOP_TIMEOUT_MS = 20_000
"""Closing while a batch runs: how long running items get to finish before the batch is killed."""

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


# -- sweeps ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepRow:
    """One row of the sweep table: node id, param name, SPEC as typed (``0:8``, ``a,b``, ``@f``)."""

    node: str
    param: str
    spec: str

    def argument(self, base_dir: str | os.PathLike[str] | None = None) -> str:
        """``NODE.PARAM=SPEC`` for ``--sweep``, a relative ``@file`` made absolute."""
        return f"{self.node}.{self.param}={resolve_spec(self.spec, base_dir)}"


def resolve_spec(spec: str, base_dir: str | os.PathLike[str] | None = None) -> str:
    """SPEC with a relative ``@file`` made absolute against ``base_dir`` (else the current folder),
    so the child process reads the same file whatever its working folder."""
    spec = spec.strip()
    if not spec.startswith("@"):
        return spec
    path = Path(spec[1:].strip()).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path if base_dir is not None else Path.cwd() / path
    return "@" + str(path)


def node_label(node: Node, registry: Registry) -> str:
    """How the node combo names a node: ``3 · KSampler``, or ``3 · My title`` if it has one."""
    spec = registry.get(node.type)
    name = node.title or (spec.display_name if spec is not None and spec.display_name else node.type)
    return f"{node.id} · {name}"



def sweepable_nodes(graph: Graph, registry: Registry) -> list[tuple[str, str]]:
    """(id, label) of every node of a known type that has params, in id order."""
    found = []
    for node_id in sorted(graph.nodes, key=id_sort_key):
        node = graph.nodes[node_id]
        spec = registry.get(node.type)
        if spec is not None and spec.params:
            found.append((node_id, node_label(node, registry)))
    return found


def node_params(graph: Graph, registry: Registry, node_id: str) -> list[str]:
    """The param names of a node's spec (empty for an unknown node or type)."""
    node = graph.nodes.get(node_id)
    spec = registry.get(node.type) if node is not None else None
    return [p.name for p in spec.params] if spec is not None else []


def default_rows(graph: Graph, registry: Registry) -> list[SweepRow]:
    """The rows a new sweep table starts with: ``seed`` (or ``noise_seed``) of the first node that
    has one, over ``0:8``; none if the graph has no such param."""
    for node_id, _label in sweepable_nodes(graph, registry):
        names = node_params(graph, registry, node_id)
        for name in SEED_PARAMS:
            if name in names:
                return [SweepRow(node_id, name, DEFAULT_SEED_SPEC)]
    return []


@dataclass
class SweepCount:
    """The grid the rows form: its size, each row's number of values, and what is wrong."""

    total: int
    sizes: list[int]
    row_errors: dict[int, str] = field(default_factory=dict)
    error: str | None = None
    """The first problem (a row's, or the grid's: a param swept twice, too many items)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        """``24 items: 3 × 8`` (``1 item: the graph as it is`` without sweeps)."""
        if not self.sizes:
            return "1 item: the graph as it is (no sweeps)"
        noun = "item" if self.total == 1 else "items"
        if len(self.sizes) == 1:
            return f"{self.total:,} {noun}"
        return f"{self.total:,} {noun}: " + " × ".join(f"{s:,}" for s in self.sizes)


def range_size(spec: str) -> tuple[int, str, str] | None:
    """(number of values, first, last) of a range SPEC (``0:1000:7``) without listing its values;
    None if SPEC is not a range or is empty/invalid (the engine's parser then says why)."""
    from nodegraph.batch.sweeps import range_bounds

    try:
        return range_bounds(spec)
    except UsageError:
        return None


def count_items(graph: Graph, registry: Registry, rows: Sequence[SweepRow], *,
                options: RunOptions | None = None,
                base_dir: str | os.PathLike[str] | None = None) -> SweepCount:
    """Parse each row with ``nodegraph.batch.sweeps.parse_sweep`` (the CLI's parser: kinds, limits,
    choices, ``@file``) and multiply the sizes. Ranges longer than :data:`LIVE_CHECK_LIMIT` are
    counted arithmetically and only their first and last values are parsed."""
    from nodegraph.batch.sweeps import MAX_ITEMS, Sweep, check_distinct, parse_sweep

    sizes: list[int] = []
    errors: dict[int, str] = {}
    parsed: list[Sweep] = []
    for i, row in enumerate(rows):
        if not row.node or not row.param:
            errors[i] = f"sweep {i + 1}: choose a node and a param"
            sizes.append(0)
            continue
        spec = resolve_spec(row.spec, base_dir)
        ranged = range_size(spec)
        try:
            if ranged is not None and LIVE_CHECK_LIMIT < ranged[0] <= MAX_ITEMS:
                count, first, last = ranged
                ends = parse_sweep(graph, registry, f"{row.node}.{row.param}={first},{last}",
                                   options=options)
                parsed.append(Sweep(ends.node, ends.param, spec, ends.values))
                sizes.append(count)
            else:
                sweep = parse_sweep(graph, registry, f"{row.node}.{row.param}={spec}",
                                    options=options)
                parsed.append(sweep)
                sizes.append(len(sweep.values))
        except UsageError as exc:
            errors[i] = str(exc)
            sizes.append(0)
    total = math.prod(sizes) if sizes else 1
    first_error = errors[min(errors)] if errors else None
    if first_error is None:
        try:
            check_distinct(parsed)
        except UsageError as exc:
            first_error = str(exc)
    if first_error is None and total > MAX_ITEMS:
        first_error = f"the sweeps form {total:,} items; at most {MAX_ITEMS:,} are allowed"
    return SweepCount(total, sizes, errors, first_error)


# -- the command line --------------------------------------------------------------------------
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


# -- reading the progress ----------------------------------------------------------------------
class LineBuffer:
    """Bytes as they arrive from a pipe → complete text lines; a partial last line waits for the
    rest (``flush`` returns it at the end of the stream)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        self._pending += bytes(data)
        *lines, self._pending = self._pending.split(b"\n")
        return [self._decode(line) for line in lines]

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, b""
        return [self._decode(rest)] if rest.strip() else []

    @staticmethod
    def _decode(line: bytes) -> str:
        return line.decode("utf-8", errors="replace").rstrip("\r")


def parse_event(line: str) -> dict[str, Any] | None:
    """A progress event (a JSON object with an ``"event"`` name), or None for any other line."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("event"), str):
        return data
    return None


@dataclass
class WorkerInfo:
    """One row of the workers table."""

    name: str
    host: str = ""
    pid: int | None = None
    threads: int | None = None
    done: int = 0
    items_per_s: float = 0.0
    alive: bool = True
    ready: bool = False
    item: int | None = None  # the item it runs now
    reason: str = ""  # why it was lost
    stopped: bool = False  # the batch finished (its workers were closed)

    def status(self) -> str:
        if not self.alive:
            return "lost"
        if self.stopped:
            return "stopped"
        if not self.ready:
            return "starting…"
        return f"alive · item {self.item}" if self.item is not None else "alive · idle"


@dataclass
class BatchState:
    """Everything the events said so far (docs/batch.md, "JSON progress")."""

    started: bool = False
    finished: bool = False
    total: int = 0
    todo: int = 0
    skipped: int = 0
    done: int = 0  # including skipped
    done_this_run: int = 0
    failed: int = 0
    retries: int = 0
    items_per_s: float = 0.0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    backend: str = ""
    out: str = ""
    resume: bool = False
    interrupted: bool = False
    model_loads: int = 0
    workers_started: int = 0
    replacements: int = 0
    workers: dict[str, WorkerInfo] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)  # item index → error
    files: list[str] = field(default_factory=list)  # outputs written this run
    log: list[str] = field(default_factory=list)
    error: list[str] = field(default_factory=list)  # why the batch refused to start or stopped

    def worker(self, name: Any) -> WorkerInfo:
        key = str(name)
        if key not in self.workers:
            self.workers[key] = WorkerInfo(key)
        return self.workers[key]

    def apply(self, event: dict[str, Any]) -> list[str]:
        """Update from one event; returns the log messages it adds (also kept in ``log``)."""
        kind = event.get("event")
        handler = getattr(self, f"_on_{kind}", None) if isinstance(kind, str) else None
        messages = handler(event) if handler is not None else None
        messages = list(messages or [])
        self.log.extend(messages)
        return messages

    def _counters(self, e: dict[str, Any]) -> None:
        for name in ("total", "done", "done_this_run", "skipped", "failed", "retries"):
            if isinstance(e.get(name), int):
                setattr(self, name, e[name])
        if isinstance(e.get("items_per_s"), (int, float)):
            self.items_per_s = float(e["items_per_s"])
        if "eta_s" in e:
            self.eta_s = float(e["eta_s"]) if isinstance(e["eta_s"], (int, float)) else None
        if isinstance(e.get("elapsed_s"), (int, float)):
            self.elapsed_s = float(e["elapsed_s"])
        workers = e.get("workers")
        if isinstance(workers, dict):
            for name, w in workers.items():
                if not isinstance(w, dict):
                    continue
                info = self.worker(name)
                info.done = int(w.get("done", info.done))
                info.items_per_s = float(w.get("items_per_s", info.items_per_s))
                info.alive = bool(w.get("alive", info.alive))
                info.host = str(w.get("host") or info.host)

    def _on_start(self, e: dict[str, Any]) -> list[str]:
        self.started = True
        self.total = int(e.get("total", 0))
        self.skipped = int(e.get("skipped", 0))
        self.done = self.skipped
        self.todo = int(e.get("todo", self.total - self.skipped))
        self.backend = str(e.get("backend", ""))
        self.out = str(e.get("out", ""))
        self.resume = bool(e.get("resume", False))
        text = (f"batch of {self.total} item(s), {self.todo} to do"
                + (f" ({self.skipped} done before)" if self.skipped else "")
                + f"; {e.get('workers', '?')} {self.backend} worker(s)")
        version = e.get("progress_version")
        if isinstance(version, int) and version > 1:
            text += (f" — progress events version {version}; this editor reads version 1, "
                     "some figures may be missing")
        return [text]

    def _on_worker_starting(self, e: dict[str, Any]) -> list[str]:
        info = self.worker(e.get("worker"))
        info.alive, info.ready, info.item = True, False, None
        return [f"starting replacement worker {info.name}"] if e.get("replacement") else []

    def _on_worker_ready(self, e: dict[str, Any]) -> list[str]:
        info = self.worker(e.get("worker"))
        info.ready = info.alive = True
        info.host = str(e.get("host") or info.host)
        info.pid = int(e["pid"]) if isinstance(e.get("pid"), int) else info.pid
        info.threads = int(e["threads"]) if isinstance(e.get("threads"), int) else info.threads
        return []

    def _on_worker_lost(self, e: dict[str, Any]) -> list[str]:
        info = self.worker(e.get("worker"))
        info.alive, info.item = False, None
        info.reason = str(e.get("reason", ""))
        where = f" while running item {e['index']}" if e.get("index") is not None else ""
        return [f"worker {info.name} lost{where}: {info.reason}"]

    def _on_item_started(self, e: dict[str, Any]) -> list[str]:
        self.worker(e.get("worker")).item = int(e["index"]) if e.get("index") is not None else None
        return []

    def _on_retry(self, e: dict[str, Any]) -> list[str]:
        self.retries += 1
        return [f"item {e.get('index')} goes back to the queue (attempt {e.get('attempt')}): "
                f"{e.get('reason', '')}"]

    def _on_item_done(self, e: dict[str, Any]) -> list[str]:
        self.done += 1
        self.done_this_run += 1
        info = self.worker(e.get("worker"))
        info.done += 1
        info.item = None
        self.files.extend(str(f) for f in e.get("files", []) or [])
        return []

    def _on_item_failed(self, e: dict[str, Any]) -> list[str]:
        self.failed += 1
        index = int(e.get("index", -1))
        error = str(e.get("error") or "")
        self.failures[index] = error
        if e.get("worker") is not None:
            self.worker(e.get("worker")).item = None
        first = error.strip().splitlines()[0] if error.strip() else "(no message)"
        return [f"item {index} failed ({e.get('kind', '?')}): {first}"]

    def _on_progress(self, e: dict[str, Any]) -> list[str]:
        self._counters(e)
        return []

    def _on_error(self, e: dict[str, Any]) -> list[str]:
        # The same lines reach the log from stderr; keep them for the summary only.
        self.error = [str(m) for m in e.get("messages", []) or []]
        return []

    def _on_finish(self, e: dict[str, Any]) -> list[str]:
        self._counters(e)
        self.finished = True
        self.interrupted = bool(e.get("interrupted", False))
        self.model_loads = int(e.get("model_loads", 0) or 0)
        self.workers_started = int(e.get("workers_started", 0) or 0)
        self.replacements = int(e.get("replacements", 0) or 0)
        for info in self.workers.values():
            info.item = None
            info.stopped = True
        state = "interrupted" if self.interrupted else "finished"
        return [f"{state}: {self.done}/{self.total} done, {self.failed} failed, "
                f"{self.retries} retried, {self.model_loads} model load(s), "
                f"{format_duration(self.elapsed_s)}"]


def format_duration(seconds: float | None) -> str:
    """``0:42``, ``12:05``, ``1:02:03``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def stats_text(state: BatchState) -> str:
    """``12/24 done · 2.04 items/s · ETA 0:06 · 0 retried · 0 failed`` (``took 0:12`` instead of
    the ETA once finished)."""
    parts = [f"{state.done}/{state.total} done"]
    if state.skipped:
        parts.append(f"{state.skipped} done before")
    parts.append(f"{state.items_per_s:.2f} items/s")
    parts.append(f"took {format_duration(state.elapsed_s)}" if state.finished
                 else f"ETA {format_duration(state.eta_s)}")
    parts += [f"{state.retries} retried", f"{state.failed} failed"]
    return " · ".join(parts)


def cli_message(stderr_lines: Sequence[str]) -> str:
    """What ``nodegraph batch`` said about why it stopped: its ``nodegraph batch: …`` lines, else
    the last lines of stderr (graph problems; a traceback's last line)."""
    lines = [line.strip() for line in stderr_lines
             if line.strip() and not line.strip().startswith("stopping:")]
    said = [line.removeprefix("nodegraph batch: ") for line in lines
            if line.startswith("nodegraph batch: ")]
    return "\n".join((said or lines)[-6:])


def exit_summary(code: int | None, state: BatchState, stderr_lines: Sequence[str] = (), *,
                 crashed: bool = False, killed: bool = False,
                 stopped: bool = False) -> tuple[str, str]:
    """(level, text) for the end of a batch: level ``ok``, ``warn`` or ``error``. ``crashed``: the
    process died of a signal — ``killed`` by the dialog, or ``stopped`` (a Stop that came before
    the batch could handle it, e.g. while Python was still starting)."""
    counts = f"{state.done}/{state.total} done, {state.failed} failed"
    remaining = max(state.total - state.done - state.failed, 0)
    resume = (f" The folder is resumable: Start again with Resume to do the remaining {remaining}."
              if state.started and remaining else "")
    said = cli_message(state.error or stderr_lines)
    if crashed or code is None:
        if killed or stopped:
            return ("error" if killed else "warn"), \
                f"{'Killed' if killed else 'Stopped'}: {counts}.{resume}"
        return "error", f"The batch process crashed: {counts}.{resume}" + (f"\n{said}" if said else "")
    if code == EXIT_OK:
        before = f" ({state.skipped} done before)" if state.skipped else ""
        return "ok", f"Done: {state.done}/{state.total} items{before}."
    if code == EXIT_INTERRUPTED:
        return "warn", f"Interrupted: {counts}.{resume}"
    if code == EXIT_INVALID:
        return "error", f"Not started — nodegraph batch refused the request:\n{said or '(no message)'}"
    if code == EXIT_FAILED:
        if state.failed and state.finished:
            return "error", (f"Finished with failures: {counts}. See errors.jsonl in the folder "
                             "(the failed items are not retried on resume).")
        return "error", f"The batch stopped: {said or '(no message)'}\n{counts}.{resume}"
    return "error", f"nodegraph batch exited with code {code}: {said or '(no message)'}\n{counts}."


# -- widgets -----------------------------------------------------------------------------------
class SpecEdit(QWidget):
    """The SPEC cell: a line edit and a "…" button that picks an ``@file``."""

    def __init__(self, spec: str, pick_file: Callable[[], str | None], parent: QWidget | None = None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.edit = QLineEdit(spec, self)
        self.edit.setCursorPosition(0)
        self.edit.setPlaceholderText("0:100 · 0:1000:7 · a,b,c · @file")
        self.edit.setToolTip("0:100 (100 values) · 0:1000:7 (a step) · a,b,c (a list) · "
                             "@file (one value a line)")
        self.button = QToolButton(self)
        self.button.setText("…")
        self.button.setToolTip("Take the values from a text file, one a line (@file)")
        self.button.clicked.connect(lambda: self._pick(pick_file))
        lay.addWidget(self.edit, 1)
        lay.addWidget(self.button)

    def _pick(self, pick_file: Callable[[], str | None]) -> None:
        path = pick_file()
        if path:
            self.edit.setText("@" + path)


class BatchDialog(QDialog):
    """Non-modal: build a sweep of ``doc``'s graph, run it with ``nodegraph batch``, follow it.

    Questions and file pickers go through attributes tests may replace: ``ask_directory(start)``,
    ``ask_file(start)``, ``confirm_close()`` (→ ``"stop"`` or ``"cancel"``), ``open_url(QUrl)``.
    """

    def __init__(self, doc: Any, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.session = session
        self.setWindowTitle("Batch")
        self.setModal(False)
        self.setObjectName("batchDialog")
        self.ask_directory: Callable[[str], str | None] = self._ask_directory
        self.ask_file: Callable[[str], str | None] = self._ask_file
        self.confirm_close: Callable[[], str] = self._confirm_close
        self.open_url: Callable[[QUrl], Any] = QDesktopServices.openUrl
        self.process: QProcess | None = None
        self.state = BatchState()
        self.count = SweepCount(1, [])
        self.summary: tuple[str, str] | None = None
        self.exit_code: int | None = None
        self.stderr_lines: list[str] = []
        self._stdout = LineBuffer()
        self._stderr = LineBuffer()
        self._stop_requested = False
        self._killed = False
        self._snapshot_dir: Path | None = None
        self._snapshot_names = ("", "")
        self._out_edited = False
        self._listening: Graph | None = None
        self._recount_timer = QTimer(self)
        self._recount_timer.setSingleShot(True)
        self._recount_timer.setInterval(200)
        self._recount_timer.timeout.connect(self.recount)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(100)
        self._refresh_timer.timeout.connect(self._refresh_nodes)
        self._build()
        self._reset_stop_button()
        self._reset_rows()
        self.out_edit.setText(str(self._default_out()))
        self._out_edited = False
        self._check_folder()
        self.recount()
        self._update_buttons()
        doc.graph_replaced.connect(self._graph_replaced)
        self._listen(doc.graph)
        if parent is not None:
            parent.installEventFilter(self)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._kill_now)
        self.resize(780, 820)

    # -- building ----------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        split = QSplitter(Qt.Vertical, self)
        split.setChildrenCollapsible(False)
        lay.addWidget(split, 1)

        setup = QWidget(split)
        s_lay = QVBoxLayout(setup)
        s_lay.setContentsMargins(0, 0, 0, 0)
        sweeps = QGroupBox("Sweeps — the last one varies fastest", setup)
        sw_lay = QVBoxLayout(sweeps)
        self.table = QTableWidget(0, 3, sweeps)
        self.table.setObjectName("sweepTable")
        self.table.setHorizontalHeaderLabels(["Node", "Param", "Values"])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.setFocusPolicy(Qt.NoFocus)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Interactive)
        header.setSectionResizeMode(1, QHeaderView.Interactive)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        self.table.setColumnWidth(0, 210)
        self.table.setColumnWidth(1, 140)
        self.table.verticalHeader().setDefaultSectionSize(32)
        self.table.setMinimumHeight(110)
        sw_lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add sweep", sweeps)
        self.add_button.clicked.connect(lambda: self.add_row())
        self.remove_button = QPushButton("Remove sweep", sweeps)
        self.remove_button.clicked.connect(self.remove_selected_row)
        self.remove_button.setFocusPolicy(Qt.NoFocus)  # the row being edited keeps the focus
        self.remove_button.setToolTip("Remove the sweep being edited (else the last one)")
        self.count_label = QLabel(sweeps)
        self.count_label.setObjectName("countLabel")
        self.count_label.setWordWrap(True)
        self.count_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        row.addSpacing(12)
        row.addWidget(self.count_label, 1)
        sw_lay.addLayout(row)
        s_lay.addWidget(sweeps, 1)

        where = QGroupBox("Output and workers", setup)
        form = QFormLayout(where)
        out_row = QHBoxLayout()
        self.out_edit = QLineEdit(where)
        self.out_edit.textEdited.connect(self._out_text_edited)
        self.out_edit.textChanged.connect(lambda _t: self._check_folder())
        self.browse_button = QPushButton("Browse…", where)
        self.browse_button.clicked.connect(self._browse)
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(self.browse_button)
        form.addRow("Folder", out_row)
        self.resume_check = QCheckBox("Resume the batch in this folder", where)
        self.resume_note = QLabel(where)
        self.resume_note.setWordWrap(True)
        self.resume_note.setAlignment(Qt.AlignLeft | Qt.AlignTop)  # right under the checkbox
        self.resume_note.setStyleSheet(f"color: {theme.TEXT_DIM.name()};")
        res = QVBoxLayout()
        res.setSpacing(0)
        res.addWidget(self.resume_check)
        res.addWidget(self.resume_note)
        res.setContentsMargins(0, 0, 0, 0)
        form.addRow("", res)
        workers_row = QHBoxLayout()
        self.local_radio = QRadioButton("Local processes", where)
        self.local_radio.setChecked(True)
        self.workers_spin = QSpinBox(where)
        self.workers_spin.setRange(1, max(1, os.cpu_count() or 1))
        self.workers_spin.setValue(1)
        self.workers_spin.setToolTip("worker processes on this machine (each loads the models once)")
        self.ray_radio = QRadioButton("Ray cluster", where)
        self.ray_edit = QLineEdit(where)
        self.ray_edit.setPlaceholderText("host:6379 or auto")
        self.ray_edit.setEnabled(False)
        group = QButtonGroup(self)
        group.addButton(self.local_radio)
        group.addButton(self.ray_radio)
        self.local_radio.toggled.connect(self._backend_toggled)
        self.ray_edit.textChanged.connect(lambda _t: self._update_buttons())
        workers_row.addWidget(self.local_radio)
        workers_row.addWidget(self.workers_spin)
        workers_row.addSpacing(16)
        workers_row.addWidget(self.ray_radio)
        workers_row.addWidget(self.ray_edit, 1)
        form.addRow("Workers", workers_row)
        s_lay.addWidget(where)

        run = QWidget(split)
        r_lay = QVBoxLayout(run)
        r_lay.setContentsMargins(0, 0, 0, 0)
        self.progress = QProgressBar(run)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m items")
        self.progress.setTextVisible(True)
        r_lay.addWidget(self.progress)
        self.stats_label = QLabel("not started", run)
        self.stats_label.setObjectName("statsLabel")
        r_lay.addWidget(self.stats_label)
        self.status_label = QLabel(run)
        self.status_label.setObjectName("statusLabel")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.status_label.hide()
        r_lay.addWidget(self.status_label)
        self.worker_table = QTableWidget(0, 5, run)
        self.worker_table.setObjectName("workerTable")
        self.worker_table.setHorizontalHeaderLabels(["Worker", "Host", "Done", "Items/s", "Status"])
        self.worker_table.verticalHeader().setVisible(False)
        self.worker_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.worker_table.setSelectionMode(QAbstractItemView.NoSelection)
        wh = self.worker_table.horizontalHeader()
        for col in range(4):
            wh.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        wh.setSectionResizeMode(4, QHeaderView.Stretch)
        self.worker_table.setMinimumHeight(80)
        r_lay.addWidget(self.worker_table, 1)
        self.log_list = QListWidget(run)
        self.log_list.setObjectName("batchLog")
        self.log_list.setMinimumHeight(80)
        self.log_list.setWordWrap(True)
        self.log_list.setResizeMode(QListView.Adjust)  # re-wrap long lines when resized
        self.log_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        r_lay.addWidget(self.log_list, 1)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start", self)
        self.start_button.setObjectName("startBatch")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setObjectName("stopBatch")
        self.stop_button.clicked.connect(self.stop)
        self.open_button = QPushButton("Open folder", self)
        self.open_button.clicked.connect(self.open_folder)
        self.close_button = QPushButton("Close", self)
        self.close_button.setAutoDefault(False)
        self.close_button.clicked.connect(self.reject)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.close_button)
        lay.addLayout(buttons)

    # -- the sweep table ---------------------------------------------------------------------
    def add_row(self, row: SweepRow | None = None) -> int:
        """Append a row (a fresh one: the first node without a sweep, its first param, empty
        values). Returns its index."""
        graph, reg = self.doc.graph, self.doc.registry
        nodes = sweepable_nodes(graph, reg)
        if row is None:
            used = {r.node for r in self.rows()}
            free = [n for n, _ in nodes if n not in used] or [n for n, _ in nodes]
            node = free[0] if free else ""
            params = node_params(graph, reg, node)
            row = SweepRow(node, params[0] if params else "", "")
        i = self.table.rowCount()
        self.table.insertRow(i)
        node_combo = QComboBox(self.table)
        node_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        param_combo = QComboBox(self.table)
        spec = SpecEdit(row.spec, lambda: self.ask_file(self._base_dir()), self.table)
        self.table.setCellWidget(i, 0, node_combo)
        self.table.setCellWidget(i, 1, param_combo)
        self.table.setCellWidget(i, 2, spec)
        self._fill_nodes(node_combo, nodes, row.node)
        self._fill_params(node_combo, param_combo, row.param)
        node_combo.currentIndexChanged.connect(
            lambda _i, n=node_combo, p=param_combo: self._node_chosen(n, p))
        param_combo.currentIndexChanged.connect(lambda _i: self.recount())
        spec.edit.textChanged.connect(lambda _t: self._recount_timer.start())
        self.recount()
        return i

    def remove_selected_row(self) -> None:
        """Remove the row being edited (the one holding the focus, else the last one)."""
        if self.table.rowCount() == 0:
            return
        i = self._focused_row()
        self.table.removeRow(i if i is not None else self.table.rowCount() - 1)
        self.recount()

    def _focused_row(self) -> int | None:
        widget = QApplication.focusWidget()
        while widget is not None:
            for i in range(self.table.rowCount()):
                if widget in self._row_widgets(i):
                    return i
            widget = widget.parentWidget()
        return None

    def set_rows(self, rows: Sequence[SweepRow]) -> None:
        """Replace the table's rows."""
        self.table.setRowCount(0)
        for row in rows:
            self.add_row(row)
        self.recount()

    def rows(self) -> list[SweepRow]:
        """The table as it stands."""
        found = []
        for i in range(self.table.rowCount()):
            node, param, spec = self._row_widgets(i)
            if node is None:
                continue
            found.append(SweepRow(str(node.currentData() or ""), str(param.currentData() or ""),
                                  spec.edit.text().strip()))
        return found

    def spec_edit(self, i: int) -> QLineEdit:
        """The values field of row ``i``."""
        return self._row_widgets(i)[2].edit

    def _row_widgets(self, i: int) -> tuple[Any, Any, Any]:
        return (self.table.cellWidget(i, 0), self.table.cellWidget(i, 1),
                self.table.cellWidget(i, 2))

    def _fill_nodes(self, combo: QComboBox, nodes: list[tuple[str, str]], current: str) -> None:
        combo.blockSignals(True)
        combo.clear()
        for node_id, label in nodes:
            combo.addItem(label, node_id)
        if current and combo.findData(current) < 0:  # a node that is gone: keep it, marked
            combo.addItem(f"{current} · (not in the graph)", current)
        combo.setCurrentIndex(max(0, combo.findData(current)) if combo.count() else -1)
        combo.blockSignals(False)

    def _fill_params(self, node_combo: QComboBox, combo: QComboBox, current: str) -> None:
        graph, reg = self.doc.graph, self.doc.registry
        node_id = str(node_combo.currentData() or "")
        combo.blockSignals(True)
        combo.clear()
        spec = reg.get(graph.nodes[node_id].type) if node_id in graph.nodes else None
        for p in (spec.params if spec is not None else ()):
            combo.addItem(p.name, p.name)
            combo.setItemData(combo.count() - 1, f"{p.kind}" + (f" — {p.description}"
                                                                 if p.description else ""),
                              Qt.ToolTipRole)
        index = combo.findData(current) if current else -1
        if index < 0:
            seedish = [combo.findData(n) for n in SEED_PARAMS if combo.findData(n) >= 0]
            index = seedish[0] if seedish and not current else (0 if combo.count() else -1)
        combo.setCurrentIndex(index)
        combo.blockSignals(False)

    def _node_chosen(self, node_combo: QComboBox, param_combo: QComboBox) -> None:
        self._fill_params(node_combo, param_combo, str(param_combo.currentData() or ""))
        self.recount()

    def _reset_rows(self) -> None:
        self.set_rows(default_rows(self.doc.graph, self.doc.registry))

    def _refresh_nodes(self) -> None:
        """The graph's nodes changed: refill the node combos (selections kept)."""
        nodes = sweepable_nodes(self.doc.graph, self.doc.registry)
        for i in range(self.table.rowCount()):
            node, param, _spec = self._row_widgets(i)
            current_node = str(node.currentData() or "")
            current_param = str(param.currentData() or "")
            self._fill_nodes(node, nodes, current_node)
            self._fill_params(node, param, current_param)
        self.recount()

    # -- following the document --------------------------------------------------------------
    def _listen(self, graph: Graph) -> None:
        if self._listening is graph:
            return
        self._unlisten()
        graph.add_listener(self._graph_changed)
        self._listening = graph

    def _unlisten(self) -> None:
        if self._listening is not None:
            try:
                self._listening.remove_listener(self._graph_changed)
            except ValueError:
                pass
            self._listening = None

    def _graph_changed(self, change: GraphChange) -> None:
        if change.kind in ("node_added", "node_removed", "node_changed"):
            self._refresh_timer.start()
        elif change.kind == "param_changed":
            self._recount_timer.start()  # e.g. a COMBO's choices may depend on other params

    def _graph_replaced(self) -> None:
        self._listen(self.doc.graph)
        if not self._out_edited and not self.running:
            self.out_edit.setText(str(self._default_out()))
            self._out_edited = False
        self._reset_rows()

    def showEvent(self, ev: Any) -> None:
        self._listen(self.doc.graph)
        self._refresh_nodes()
        if not self.running:
            self._check_folder()  # a batch may have appeared (or gone) meanwhile
        super().showEvent(ev)

    def hideEvent(self, ev: Any) -> None:
        self._unlisten()
        super().hideEvent(ev)

    # -- counting ----------------------------------------------------------------------------
    def _base_dir(self) -> str:
        return str(self.doc.path.parent) if getattr(self.doc, "path", None) else os.getcwd()

    def recount(self) -> SweepCount:
        """Count the items (the engine's sweep parser) and show it, or the first error."""
        self._recount_timer.stop()
        self.count = count_items(self.doc.graph, self.doc.registry, self.rows(),
                                 options=self.session.options, base_dir=self._base_dir())
        if self.count.ok:
            self.count_label.setText(self.count.describe())
            self.count_label.setStyleSheet("")
        else:
            self.count_label.setText(str(self.count.error))
            self.count_label.setStyleSheet(f"color: {theme.PROBLEM.name()};")
        for i in range(self.table.rowCount()):
            _n, _p, spec = self._row_widgets(i)
            bad = i in self.count.row_errors
            spec.edit.setStyleSheet(f"border: 1px solid {theme.PROBLEM.name()};" if bad else "")
            spec.edit.setToolTip(self.count.row_errors.get(i, "0:100 · 0:1000:7 · a,b,c · @file"))
        if not self.running and not self.state.started:
            total = self.count.total if self.count.ok else 0
            self.progress.setRange(0, max(1, total))
            self.progress.setValue(0)
            self.progress.setFormat(f"0 / {total:,} items")
        self._update_buttons()
        return self.count

    # -- output folder and workers -----------------------------------------------------------
    def _default_out(self) -> Path:
        return default_out_dir(self.session.options.output_dir, getattr(self.doc, "path", None))

    def out_dir(self) -> Path | None:
        text = self.out_edit.text().strip()
        return Path(text).expanduser().absolute() if text else None

    def _out_text_edited(self, _text: str) -> None:
        self._out_edited = True

    def _browse(self) -> None:
        out = self.out_dir()
        start = str(out if out is not None and out.exists() else
                    (out.parent if out is not None else Path.cwd()))
        path = self.ask_directory(start)
        if path:
            self.out_edit.setText(path)
            self._out_edited = True

    def _check_folder(self) -> None:
        """Auto-check Resume (and say why) when the folder already holds a batch."""
        out = self.out_dir()
        has_batch = out is not None and (out / MANIFEST).is_file()
        if has_batch:
            self.resume_check.setChecked(True)
            self.resume_note.setText(
                "This folder already holds a batch (manifest.json): Resume continues it and skips "
                "the items already done. It is refused if the graph or the sweeps changed since — "
                "choose another folder for a different batch.")
        else:
            self.resume_check.setChecked(False)
            self.resume_note.setText("A new batch is started in this folder.")
        self.resume_check.setEnabled(has_batch and not self.running)
        self._update_buttons()

    def _backend_toggled(self, local: bool) -> None:
        self.workers_spin.setEnabled(local and not self.running)
        self.ray_edit.setEnabled(not local and not self.running)
        self._update_buttons()

    # -- running -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.NotRunning

    def request(self, graph_file: Path) -> BatchRequest:
        """The request the dialog's fields make, for a graph snapshot file."""
        out = self.out_dir()
        if out is None:
            raise UsageError("choose an output folder")
        opts = self.session.options
        ray = self.ray_edit.text().strip() if self.ray_radio.isChecked() else None
        return BatchRequest(graph_file=graph_file, out_dir=out, sweeps=self.rows(),
                            workers=self.workers_spin.value(), ray=ray or None,
                            resume=self.resume_check.isChecked(),
                            models_dirs=tuple(opts.models_dirs), device=opts.device,
                            dtype=opts.dtype, base_dir=Path(self._base_dir()))

    def start(self) -> bool:
        """Snapshot the graph and start ``nodegraph batch``; False (and why, shown) if it cannot."""
        if self.running:
            return False
        if not self.recount().ok:
            self._show_status("error", str(self.count.error))
            return False
        self._cleanup_snapshot()
        stem = self.doc.path.stem if getattr(self.doc, "path", None) else "untitled"
        try:
            self._snapshot_dir = Path(tempfile.mkdtemp(prefix="nodegraph-batch-graph-"))
            graph_file = write_snapshot(self.doc.graph, self._snapshot_dir, stem)
            argv = build_argv(self.request(graph_file))
        except (OSError, UsageError) as exc:
            self._cleanup_snapshot()
            self._show_status("error", f"Cannot start the batch: {exc}")
            return False
        self.state = BatchState()
        self.summary = None
        self.exit_code = None
        self.stderr_lines = []
        self._stdout, self._stderr = LineBuffer(), LineBuffer()
        self._stop_requested = self._killed = False
        self._snapshot_names = (str(graph_file), self.doc.display_name()
                                if hasattr(self.doc, "display_name") else stem)
        self.log_list.clear()
        self.worker_table.setRowCount(0)
        self.status_label.hide()
        self.progress.setRange(0, 0)  # busy until the start event says how many
        self.stats_label.setText("starting…")
        self._reset_stop_button()
        self._log("$ nodegraph batch " + " ".join(_quote(a) for a in argv[4:]), dim=True)

        proc = QProcess(self)
        env = QProcessEnvironment()
        for key, value in child_environment(dict(os.environ)).items():
            env.insert(key, value)
        proc.setProcessEnvironment(env)
        proc.setProgram(argv[0])
        proc.setArguments(argv[1:])
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._finished)
        proc.errorOccurred.connect(self._process_error)
        self.process = proc
        proc.start()
        self._update_buttons()
        return True

    def stop(self) -> None:
        """First press: SIGINT (running items finish, nothing new starts, the folder stays
        resumable). Second press: kill the batch (its local workers die with it)."""
        if not self.running or self.process is None:
            return
        if not self._stop_requested:
            self._stop_requested = True
            self._log("stopping: running items finish, no new ones start (Stop again to kill)")
            self.stop_button.setText("Kill")
            self.stop_button.setToolTip("Kill the batch now (the folder stays resumable)")
            if not _interrupt(self.process):
                self._kill()
        else:
            self._kill()

    def _reset_stop_button(self) -> None:
        self.stop_button.setText("Stop")
        self.stop_button.setToolTip("Running items finish, no new ones start; the folder stays "
                                    "resumable. Press again to kill the batch.")

    def _kill(self) -> None:
        if self.process is not None and self.running:
            self._killed = True
            self._log("killing the batch")
            self.process.kill()

    def _kill_now(self) -> None:
        """The application quits: no batch outlives it."""
        if self.running and self.process is not None:
            self._killed = True
            self.process.kill()
            self.process.waitForFinished(5000)

    def shutdown(self, timeout_ms: int = STOP_TIMEOUT_MS) -> None:
        """Stop a running batch and wait for it: SIGINT, then kill after ``timeout_ms``."""
        if not self.running or self.process is None:
            return
        if not self._stop_requested:
            self.stop()
        if self.process is not None and not self.process.waitForFinished(timeout_ms):
            self._kill()
            self.process.waitForFinished(5000)
        QApplication.processEvents()

    def _read_stdout(self) -> None:
        if self.process is None:
            return
        self._handle_stdout(self._stdout.feed(bytes(self.process.readAllStandardOutput().data())))

    def _handle_stdout(self, lines: list[str]) -> None:
        changed = False
        for line in lines:
            event = parse_event(line)
            if event is None:
                if line.strip():
                    self._log(line)
                continue
            for message in self.state.apply(event):
                self._log(message, warn=event["event"] in ("worker_lost", "item_failed", "retry"))
            changed = True
        if changed:
            self._show_progress()

    def _read_stderr(self) -> None:
        if self.process is None:
            return
        self._handle_stderr(self._stderr.feed(bytes(self.process.readAllStandardError().data())))

    def _handle_stderr(self, lines: list[str]) -> None:
        snapshot, name = self._snapshot_names
        for line in lines:
            if line.strip():
                line = line.replace(snapshot, name)  # problems name the graph, not the snapshot
                self.stderr_lines.append(line)
                self._log(line, dim=True)

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        if self.process is not None:
            self._handle_stdout(self._stdout.feed(bytes(self.process.readAllStandardOutput().data())))
            self._handle_stderr(self._stderr.feed(bytes(self.process.readAllStandardError().data())))
        self._handle_stdout(self._stdout.flush())
        self._handle_stderr(self._stderr.flush())
        crashed = status == QProcess.CrashExit
        self.exit_code = None if crashed else code
        self._end(exit_summary(self.exit_code, self.state, self.stderr_lines, crashed=crashed,
                               killed=self._killed, stopped=self._stop_requested))

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.FailedToStart:
            program = self.process.program() if self.process is not None else "python"
            self._end(("error", f"Could not start {program}: "
                       f"{self.process.errorString() if self.process else error}"))

    def _end(self, summary: tuple[str, str]) -> None:
        self.summary = summary
        self._reset_stop_button()
        self._cleanup_snapshot()
        self._show_progress()
        self._show_status(*summary)
        self._log(summary[1].splitlines()[0], warn=summary[0] != "ok")
        self._check_folder()
        self._update_buttons()
        if self.process is not None:
            self.process.deleteLater()
        self.process = None

    def _cleanup_snapshot(self) -> None:
        if self._snapshot_dir is not None:
            shutil.rmtree(self._snapshot_dir, ignore_errors=True)
            self._snapshot_dir = None

    # -- showing -----------------------------------------------------------------------------
    def _show_progress(self) -> None:
        s = self.state
        if s.started:
            self.progress.setFormat("%v / %m items")
            self.progress.setRange(0, max(1, s.total))
            self.progress.setValue(min(s.done, max(1, s.total)))
            self.stats_label.setText(stats_text(s))
        workers = list(s.workers.values())
        self.worker_table.setRowCount(len(workers))
        for r, w in enumerate(workers):
            cells = [w.name, w.host, str(w.done), f"{w.items_per_s:.2f}", w.status()]
            for c, text in enumerate(cells):
                item = self.worker_table.item(r, c)
                if item is None:
                    item = QTableWidgetItem()
                    if c in (2, 3):
                        item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                    self.worker_table.setItem(r, c, item)
                item.setText(text)
                if c == 4:
                    item.setForeground(theme.PROBLEM if not w.alive else
                                       theme.STATE_COLORS["done"] if w.ready else theme.TEXT_DIM)
                    item.setToolTip(w.reason or (f"pid {w.pid}, {w.threads} thread(s)"
                                                 if w.pid else ""))

    def _show_status(self, level: str, text: str) -> None:
        color = {"ok": theme.STATE_COLORS["done"], "warn": theme.STATE_COLORS["interrupted"]}.get(
            level, theme.PROBLEM)
        self.status_label.setStyleSheet(f"color: {color.name()}; font-weight: 600;")
        self.status_label.setText(text)
        self.status_label.show()

    def _log(self, text: str, *, warn: bool = False, dim: bool = False) -> None:
        item = QListWidgetItem(text)
        if warn:
            item.setForeground(theme.STATE_COLORS["interrupted"])
        elif dim:
            item.setForeground(theme.TEXT_DIM)
        self.log_list.addItem(item)
        self.log_list.scrollToBottom()

    def log_lines(self) -> list[str]:
        """The log's texts (for tests and copying)."""
        return [self.log_list.item(i).text() for i in range(self.log_list.count())]

    def _update_buttons(self) -> None:
        running = self.running
        ready = (self.count.ok and self.out_dir() is not None
                 and (self.local_radio.isChecked() or bool(self.ray_edit.text().strip())))
        self.start_button.setEnabled(ready and not running)
        self.stop_button.setEnabled(running)
        out = self.out_dir()
        self.open_button.setEnabled(out is not None and out.is_dir())
        for w in (self.table, self.add_button, self.remove_button, self.out_edit,
                  self.browse_button, self.local_radio, self.ray_radio):
            w.setEnabled(not running)
        self.workers_spin.setEnabled(not running and self.local_radio.isChecked())
        self.ray_edit.setEnabled(not running and self.ray_radio.isChecked())
        self.resume_check.setEnabled(not running and out is not None and (out / MANIFEST).is_file())

    def open_folder(self) -> None:
        out = self.out_dir()
        if out is not None and out.is_dir():
            self.open_url(QUrl.fromLocalFile(str(out)))

    # -- closing -----------------------------------------------------------------------------
    def _ask_directory(self, start: str) -> str | None:
        return QFileDialog.getExistingDirectory(self, "Batch folder", start) or None

    def _ask_file(self, start: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self, "Values, one a line", start,
                                              "Text files (*.txt);;All files (*)")
        return path or None

    def _confirm_close(self) -> str:
        box = QMessageBox(QMessageBox.Question, "A batch is running",
                          "Stop the batch? Running items finish and are kept; Start it again with "
                          "Resume to do the rest.", QMessageBox.NoButton, self)
        stop = box.addButton("Stop batch", QMessageBox.AcceptRole)
        box.addButton("Keep running", QMessageBox.RejectRole)
        box.exec()
        return "stop" if box.clickedButton() is stop else "cancel"

    def may_close(self) -> bool:
        """True when nothing runs, or the user agreed to stop the batch (it is then stopped)."""
        if not self.running:
            return True
        if self.confirm_close() != "stop":
            return False
        self.shutdown()
        return True

    def reject(self) -> None:
        """Close, Esc and the title bar's close button (QDialog.closeEvent calls reject) all
        come here: a running batch is stopped first, if the user agrees."""
        if self.may_close():
            super().reject()

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        """The parent window closes: stop a running batch first (or keep both open)."""
        if obj is self.parent() and ev.type() == QEvent.Close and self.running:
            if not self.may_close():
                ev.ignore()
                return True
        return super().eventFilter(obj, ev)


def _interrupt(process: QProcess) -> bool:
    """Send SIGINT to a running process (POSIX); False where that is not possible."""
    pid = process.processId()
    if not pid or sys.platform == "win32":
        return False
    try:
        os.kill(pid, signal.SIGINT)
    except OSError:
        return False
    return True


def _quote(arg: str) -> str:
    return arg if arg and not re.search(r"[\s\"'$`\\]", arg) else json.dumps(arg, ensure_ascii=False)


def show_batch_dialog(window: Any) -> BatchDialog:
    """Show the window's Batch dialog (created on first use; one per window)."""
    dialog = window.findChild(BatchDialog)
    if dialog is None:
        dialog = BatchDialog(window.doc, window.session, window)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog
