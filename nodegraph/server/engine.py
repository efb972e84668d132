"""The one place the server meets the engine and the built-in node pack.

Everything ``nodegraph serve`` needs from outside ``nodegraph/server`` goes through :class:`Engine`:
the session (registry, executor with its output cache, the resources the node packs keep — loaded
models, model-folder listings —, run options), the run queue and history, the folders it serves
(input, output, and the temporary folder PreviewImage writes to), the model folders it lists,
freeing memory and describing the device. The node pack is reached lazily and optionally (the
server runs with any registry, e.g. the tests' torch-free one).
"""
from __future__ import annotations

import gc
import os
import platform
import sys
from pathlib import Path
from typing import Any

from ..api import Session
from ..context import RunOptions
from ..executor import OutputCache
from ..history import History, default_history_folder
from ..queue import RunQueue
from ..registry import Registry

FOLDER_TYPES = ("output", "input", "temp")


class Engine:
    """A session, its run queue and history, and the folders the server reads and writes."""

    def __init__(self, options: RunOptions, *, input_dir: str | os.PathLike[str],
                 registry: Registry | None = None, cache: OutputCache | None = None,
                 history: History | None = None):
        output_dir = Path(options.output_dir).expanduser().resolve()
        self.options = RunOptions(options.device, options.dtype, output_dir,
                                  tuple(Path(p).expanduser().resolve() for p in options.models_dirs),
                                  dict(options.extra))
        self.session = Session(registry, options=self.options, cache=cache)
        self.input_dir = Path(input_dir).expanduser().resolve()
        self.output_dir = output_dir
        for folder in (self.input_dir, self.output_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.queue = RunQueue(self.session, history if history is not None
                              else History(default_history_folder()))

    @property
    def registry(self) -> Registry:
        return self.session.registry

    def share_input_dir(self) -> None:
        """Make LoadImage list the input folder first (the built-in pack reads its input folders from
        ``NODEGRAPH_INPUT``): for the process that serves, uploads are the first images offered."""
        try:
            from nodes.image import ENV_INPUT
        except ImportError:
            return
        current = [p for p in os.environ.get(ENV_INPUT, "").split(os.pathsep) if p.strip()]
        if str(self.input_dir) not in current:
            os.environ[ENV_INPUT] = os.pathsep.join([str(self.input_dir), *current])

    def close(self) -> None:
        """Interrupt the running item, drop the pending ones, stop the worker."""
        self.queue.close()

    # -- folders ---------------------------------------------------------------------------
    def folder(self, kind: str) -> Path | None:
        """The folder behind ComfyUI's ``type`` (output, input, temp), or None for another word."""
        if kind == "output":
            return self.output_dir
        if kind == "input":
            return self.input_dir
        if kind == "temp":
            return temp_folder()
        return None

    def served_folders(self) -> list[tuple[str, Path]]:
        """``(type, folder)`` of every folder whose files clients may fetch, output first."""
        found = [("output", self.output_dir), ("input", self.input_dir)]
        temp = temp_folder()
        if temp is not None:
            found.insert(1, ("temp", temp))
        return found

    # -- models ----------------------------------------------------------------------------
    def model_categories(self) -> list[str]:
        """The model folder names (``checkpoints``, ``loras``, ...)."""
        try:
            from nodes.folders import CATEGORIES
        except ImportError:
            return []
        return list(CATEGORIES)

    def list_models(self, category: str) -> list[str] | None:
        """The files of a model category in the run's model folders; None for an unknown category."""
        if category not in self.model_categories():
            return None
        from nodes.runtime import model_folders

        return model_folders(self.session.options).list(category)

    # -- memory ----------------------------------------------------------------------------
    def free(self) -> None:
        """Queue freeing memory for the moment no item runs: cached node outputs are dropped and
        the model manager lets go of every model (both are rebuilt on demand)."""
        self.queue.between_runs(self._free_now)

    def _free_now(self) -> None:
        self.session.executor.cache.clear()
        self.session.resources.clear()  # the packs' loaded models and listings, made again on demand
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- the machine -----------------------------------------------------------------------
    def devices(self) -> list[dict[str, Any]]:
        """The compute device of runs, with its memory (imports torch: call it off the event loop)."""
        import torch

        try:
            from nodes.sd.memory import choose_device
            device = choose_device(self.options.device)
        except ImportError:
            device = torch.device("cpu")
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            name = f"{device} {torch.cuda.get_device_name(device)}"
            return [_device(name, device, total, free)]
        total, free = ram()
        return [_device(str(device), device, total, free)]


def _device(name: str, device: Any, total: int, free: int) -> dict[str, Any]:
    return {"name": name, "type": device.type, "index": device.index, "vram_total": total,
            "vram_free": free, "torch_vram_total": total, "torch_vram_free": free}


def temp_folder() -> Path | None:
    """The temporary folder PreviewImage writes to (the built-in pack's), if the pack is there."""
    try:
        from nodes.image import preview_folder
    except ImportError:
        return None
    return preview_folder().resolve()


def ram() -> tuple[int, int]:
    """Total and available RAM in bytes (psutil when installed, else the OS's own counters)."""
    try:
        import psutil
    except ImportError:
        pass
    else:
        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    total = available = 0
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, AttributeError):
        pass
    return total, available


def torch_version() -> str:
    """The installed torch version, without importing torch."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    return {"os": os.name, "platform": platform.platform(), "python_version": sys.version,
            "pytorch_version": torch_version(), "embedded_python": False}
