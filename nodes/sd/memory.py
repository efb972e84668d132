"""Where models compute, in which precision, and which of them stay resident — nothing about how
a model is read or built (that is :mod:`nodes.sd.checkpoint`).

- ``choose_device("auto")``: CUDA, then Apple MPS, then the CPU (or the one asked for).
- ``choose_dtype("auto", device)``: the precision policy (see its docstring) as a ``DtypeChoice``
  whose ``summary`` the run summary prints.
- ``ModelMemory``: keeps loaded models resident. ``load(path, loader, *key)`` returns the same
  object for the same file (path, size, modification time) and key, and counts real loads;
  ``use(*modules)`` puts modules on the compute device for the duration of a ``with`` block,
  offloading the least recently used others to CPU RAM first when the device is short of memory;
  ``free`` drops models. A session owns one (``nodes.runtime.manager``).
"""
from __future__ import annotations

import functools
import os
import statistics
import sys
import threading
import time
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, TypeVar

import torch
from torch import nn

T = TypeVar("T")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# ----------------------------------------------------------------------------------------------
# Device


def choose_device(requested: str | torch.device | None = "auto") -> torch.device:
    """The compute device: ``"auto"``/None picks CUDA, then MPS, then the CPU; anything else
    (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) is checked to exist."""
    if requested is None or str(requested) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} asked for, but this torch build sees no CUDA GPU; use 'cpu' or 'auto'")
    if device.type == "mps" and not _mps_available():
        raise ValueError(f"device {requested!r} asked for, but Apple MPS is not available; use 'cpu' or 'auto'")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {requested!r}; use auto, cpu, cuda[:N] or mps")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


# ----------------------------------------------------------------------------------------------
# Precision

# bf16 must keep the final decoded image within this PSNR of the fp32 one to be chosen by "auto".
BF16_MIN_PSNR_DB = 35.0
# What bench/models.py measured for SD1.5-size models (bf16 U-Net + VAE vs fp32, same seed); the
# bench prints the current figure as ``bf16_psnr_db``. Update when the bench says otherwise.
BF16_MEASURED_PSNR_DB = 48.7  # 2026-11-24: random full-size SD1.5, 256², 4 euler steps, cfg 7
# bf16 must beat fp32 matmuls by at least this factor on this CPU to be chosen.
BF16_MIN_SPEEDUP = 1.5


def cpu_bf16_units() -> list[str]:
    """The CPU's native bf16 instruction sets (``amx_bf16``, ``avx512_bf16``) from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [u for u in ("amx_bf16", "avx512_bf16") if u in flags]
    except OSError:
        pass
    return []


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup(n: int = 1024, pairs: int = 5) -> float:
    """How many times faster a bf16 ``n×n`` matmul runs than an fp32 one on this CPU (measured once
    per process, ~0.2 s): the median of ``pairs`` back-to-back fp32/bf16 timings, so that a moment
    of load on the machine does not flip the automatic dtype choice."""
    a32, b32 = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a32.bfloat16(), b32.bfloat16()

    def timed(x: torch.Tensor, y: torch.Tensor) -> float:
        start = time.perf_counter()
        x @ y
        return time.perf_counter() - start

    timed(a32, b32), timed(a16, b16)  # warm-up (thread pool, kernels)
    return statistics.median(timed(a32, b32) / timed(a16, b16) for _ in range(pairs))


@dataclass(frozen=True)
class DtypeChoice:
    """The precision of each component and why it was picked (``summary`` is for the run summary)."""

    unet: torch.dtype
    vae: torch.dtype
    text: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        return dtype_name(self.unet)

    @property
    def summary(self) -> str:
        parts = f"U-Net {dtype_name(self.unet)}, VAE {dtype_name(self.vae)}, text {dtype_name(self.text)}"
        return f"dtype {self.name} ({self.reason}; {parts})"


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}.get(dtype, str(dtype).removeprefix("torch."))


def choose_dtype(requested: str | torch.dtype = "auto", device: torch.device | str | None = None) -> DtypeChoice:
    """The precision policy.

    ``requested`` "fp32", "fp16" or "bf16" is honoured (fp32 is the reference mode: ComfyUI seed
    parity is promised there). ``"auto"``:

    - CUDA: fp16.
    - CPU: bf16 when the CPU has native bf16 units (AMX or AVX512-BF16), a bf16 matmul is at least
      ``BF16_MIN_SPEEDUP``× faster than fp32 here, and bf16 keeps the decoded image ≥
      ``BF16_MIN_PSNR_DB`` from fp32 (``BF16_MEASURED_PSNR_DB``, measured by bench/models.py);
    - otherwise (MPS included) fp32.

    Components: the U-Net computes in the chosen dtype; the VAE never in fp16 (SD VAEs overflow
    it) but in bf16 where the device has it, else fp32; text encoders in the chosen dtype, except
    fp16 on the CPU (slow there) which becomes fp32.
    """
    device = torch.device(device) if device is not None else choose_device()
    if isinstance(requested, torch.dtype):
        dtype, reason = requested, "requested"
    elif requested in DTYPES:
        dtype, reason = DTYPES[requested], "requested"
    elif requested == "auto":
        dtype, reason = _auto_dtype(device)
    else:
        raise ValueError(f"unknown dtype {requested!r}; use auto, fp32, fp16 or bf16")
    vae = dtype
    if dtype == torch.float16:
        vae = torch.bfloat16 if _supports_bf16(device) else torch.float32
    text = torch.float32 if (dtype == torch.float16 and device.type == "cpu") else dtype
    return DtypeChoice(dtype, vae, text, reason)


def _supports_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported()
        except (RuntimeError, AssertionError):  # no usable CUDA after all
            return False
    return device.type == "cpu" and bool(cpu_bf16_units())


def _auto_dtype(device: torch.device) -> tuple[torch.dtype, str]:
    if device.type == "cuda":
        return torch.float16, "auto: CUDA"
    if device.type != "cpu":
        return torch.float32, f"auto: fp32 on {device.type}"
    units = cpu_bf16_units()
    if not units:
        return torch.float32, "auto: the CPU has no native bf16 units"
    if BF16_MEASURED_PSNR_DB < BF16_MIN_PSNR_DB:
        return torch.float32, f"auto: bf16 quality {BF16_MEASURED_PSNR_DB:.1f} dB is below {BF16_MIN_PSNR_DB:.0f} dB"
    speedup = cpu_bf16_speedup()
    if speedup < BF16_MIN_SPEEDUP:
        return torch.float32, f"auto: bf16 matmul only {speedup:.1f}× faster than fp32 on this CPU"
    return torch.bfloat16, f"auto: CPU has {'+'.join(units)}, bf16 matmul {speedup:.1f}× faster than fp32"


# ----------------------------------------------------------------------------------------------
# Model manager


MALLOC_THRESHOLD_MB = 256


@functools.cache
def tune_cpu_allocator() -> bool:
    """Let glibc's malloc reuse freed blocks of up to MALLOC_THRESHOLD_MB instead of mapping fresh
    zeroed pages for each (called on the first model load; True if applied).

    glibc serves blocks above its mmap threshold (at most 32 MB, adjusted on the fly) with a fresh
    mapping and unmaps them on free, so every large activation costs a page fault per 4 KB. On a
    VAE decode at 256² that was 1.3 million faults and ~20% of the time (the same decode under
    diffusers happened to trip the threshold adjustment and faulted 0.8 million times). Raising the
    mmap and trim thresholds makes those blocks reusable; the price is up to that much freed memory
    kept by the process. Skipped off glibc Linux, when the user tunes malloc through the
    environment, or with NODEGRAPH_MALLOC_TUNING=0.
    """
    if os.environ.get("NODEGRAPH_MALLOC_TUNING") == "0" or not sys.platform.startswith("linux"):
        return False
    if any(k.startswith(("MALLOC_", "GLIBC_TUNABLES")) for k in os.environ):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    size = MALLOC_THRESHOLD_MB << 20
    m_trim_threshold, m_mmap_threshold = -1, -3
    return mallopt(m_mmap_threshold, size) == 1 and mallopt(m_trim_threshold, size) == 1


def module_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


@dataclass
class ManagerStats:
    """Counters a run summary reports."""

    loads: int = 0  # files actually read
    reuses: int = 0  # loads answered from memory
    offloads: int = 0  # modules moved off the compute device to make room
    frees: int = 0  # cache entries dropped
    load_seconds: float = 0.0


@dataclass
class _Entry:
    value: Any
    file_key: tuple
    bytes: int = 0


@dataclass
class _Placed:
    module: weakref.ref
    bytes: int
    in_use: int = 0


def file_identity(path: str | os.PathLike) -> tuple[str, int, int]:
    """(resolved path, size, modification time in ns): a file edited in place gets a new identity."""
    p = Path(path).resolve()
    st = p.stat()
    return str(p), st.st_size, st.st_mtime_ns


@dataclass
class ModelMemory:
    """Keeps loaded models resident and decides what sits on the compute device.

    ``device`` is where models compute (default ``choose_device()``), ``offload_device`` where they
    wait (CPU RAM). ``device_budget`` caps the bytes of weights placed on ``device`` (default: the
    device's free memory minus ``reserve`` for activations; unlimited when the device is the CPU).
    ``keep_on_device`` leaves models on the device after use until room is needed (fast repeated
    runs); False moves them back at the end of every ``use``.
    """

    device: torch.device = field(default_factory=choose_device)
    offload_device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    device_budget: int | None = None
    reserve: int = 1 << 30
    keep_on_device: bool = True
    stats: ManagerStats = field(default_factory=ManagerStats)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.offload_device = torch.device(self.offload_device)
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._placed: OrderedDict[int, _Placed] = OrderedDict()
        self._lock = threading.RLock()

    # -- loading ------------------------------------------------------------------------------
    def load(self, path: str | os.PathLike, loader: Callable[[], T], *key_parts: Hashable,
             identity: tuple[str, int, int] | None = None, on_load: Callable[[], None] | None = None) -> T:
        """``loader()``'s result for ``path``, loaded once: later calls with the same file (same
        path, size and mtime) and ``key_parts`` return the same object. A changed file reloads.

        ``identity``: the file's :func:`file_identity` when the caller already has it; ``on_load``
        is called after a real load (not when the object is reused)."""
        tune_cpu_allocator()
        ident = identity if identity is not None else file_identity(path)
        key = (ident[0], *key_parts)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.file_key == ident:
                self._entries.move_to_end(key)
                self.stats.reuses += 1
                return entry.value
            if entry is not None:  # the file changed on disk
                self._drop(key)
            start = time.perf_counter()
            value = loader()
            self.stats.load_seconds += time.perf_counter() - start
            self.stats.loads += 1
            self._entries[key] = _Entry(value, ident, _value_bytes(value))
        if on_load is not None:
            on_load()
        return value

    # -- placement ----------------------------------------------------------------------------
    @contextmanager
    def use(self, *modules: nn.Module) -> Iterator[torch.device]:
        """Put ``modules`` on the compute device for the ``with`` block; yields the device.

        Room is made first by moving the least recently used modules that are not in use to
        ``offload_device``.
        """
        with self._lock:
            new = [m for m in modules if id(m) not in self._placed]
            needed = sum(module_bytes(m) for m in new)
            self._make_room(needed, keep={id(m) for m in modules})
            for m in modules:
                placed = self._placed.get(id(m))
                if placed is None:
                    m.to(self.device)
                    placed = _Placed(weakref.ref(m), module_bytes(m))
                    self._placed[id(m)] = placed
                placed.in_use += 1
                self._placed.move_to_end(id(m))
        try:
            yield self.device
        finally:
            with self._lock:
                for m in modules:
                    placed = self._placed.get(id(m))
                    if placed is None:
                        continue
                    placed.in_use -= 1
                    if placed.in_use == 0 and not self.keep_on_device:
                        self._offload(id(m))

    def on_device(self) -> list[nn.Module]:
        """Modules currently placed on the compute device, least recently used first."""
        with self._lock:
            return [m for p in self._placed.values() if (m := p.module()) is not None]

    def placed_bytes(self) -> int:
        with self._lock:
            return sum(p.bytes for p in self._placed.values() if p.module() is not None)

    def available_bytes(self) -> float:
        """Bytes of weights that may still go to the compute device."""
        if self.device_budget is not None:
            return self.device_budget - self.placed_bytes()
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return free - self.reserve
        if self.device.type == "mps":
            limit = torch.mps.recommended_max_memory()
            return limit - torch.mps.current_allocated_memory() - self.reserve
        return float("inf")

    def _make_room(self, needed: int, keep: set[int]) -> None:
        for key in list(self._placed):
            if needed <= self.available_bytes():
                return
            placed = self._placed[key]
            if key in keep or placed.in_use:
                continue
            self._offload(key)
            self.stats.offloads += 1

    def _offload(self, key: int) -> None:
        placed = self._placed.pop(key)
        module = placed.module()
        if module is not None and self.device != self.offload_device:
            module.to(self.offload_device)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # -- freeing ------------------------------------------------------------------------------
    def free(self, path: str | os.PathLike | None = None) -> int:
        """Drop the models loaded from ``path`` (all models when None); returns how many entries.
        Their memory is released once no graph output still refers to them."""
        with self._lock:
            if path is None:
                keys = list(self._entries)
            else:
                resolved = str(Path(path).resolve())
                keys = [k for k in self._entries if k[0] == resolved]
            for key in keys:
                self._drop(key)
            return len(keys)

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        for module in _modules_of(entry.value):
            self._placed.pop(id(module), None)
        self.stats.frees += 1

    def loaded(self) -> list[dict[str, Any]]:
        """One line per resident entry: file, key, bytes (for the GUI's memory readout)."""
        with self._lock:
            return [{"file": k[0], "key": k[1:], "bytes": e.bytes} for k, e in self._entries.items()]


def _modules_of(value: Any) -> list[nn.Module]:
    if isinstance(value, nn.Module):
        return [value]
    modules = getattr(value, "modules", None)
    if callable(modules) and not isinstance(value, nn.Module):
        try:
            found = modules()
        except TypeError:
            return []
        return list(found.values()) if isinstance(found, dict) else []
    model = getattr(value, "model", None)
    return [model] if isinstance(model, nn.Module) else []


def _value_bytes(value: Any) -> int:
    return sum(module_bytes(m) for m in _modules_of(value))
