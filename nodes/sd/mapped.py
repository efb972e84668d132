"""A model file memory-mapped once, its tensors as views of it, and page-level control over it.

:class:`Mapping` maps a file copy-on-write (nothing is written back, nothing is read until a page
is touched) and hands out tensors that are views of its bytes. The loaders then want two things
from the OS:

- :meth:`Mapping.fault_in_background`: when the weights are used as they are stored, threads
  read one byte of every page in file order while the modules are being built, so that a load
  returns with every weight in RAM. Reading (rather than asking the kernel to populate the range,
  ``MADV_POPULATE_READ``, which measured slower and more erratic here) keeps the disk streaming
  through the kernel's read-ahead, works on every OS, and pays the first access of each page
  (which costs extra in a virtual machine) off the main thread.
- :meth:`Mapping.release`: when a weight is converted to another dtype, its source pages are
  dropped from the process (Linux ``madvise(MADV_DONTNEED)``; elsewhere a no-op) right after the
  conversion, so the file's bytes and the converted copy are never both resident: the peak is the
  converted model, not the file plus the model.

Only spans inside the mapping are ever advised: dropping pages of ordinary (heap) memory would
zero them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import sys
import threading
from functools import lru_cache

import torch

MADV_DONTNEED = 4
PAGE = mmap.PAGESIZE
_CHUNK = 64 << 20  # bytes faulted in per step: 16k pages, below torch's threshold for a parallel reduction


@lru_cache(maxsize=1)
def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    fn = libc.madvise
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _advise(start: int, length: int, advice: int) -> bool:
    fn = _madvise()
    return fn is not None and length > 0 and fn(start, length, advice) == 0


class Mapping:
    """A whole file mapped copy-on-write; ``start``/``end`` is its address span."""

    def __init__(self, path: str | os.PathLike):
        with open(path, "rb") as f:
            self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self._bytes = torch.frombuffer(self._mmap, dtype=torch.uint8)
        self.start = self._bytes.data_ptr()
        self.end = self.start + self._bytes.numel()
        self._stop = threading.Event()

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    def tensor(self, offset: int, nbytes: int, dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
        """The ``nbytes`` at ``offset`` as a tensor of ``dtype`` and ``shape`` (a view: no copy, no read).

        The bytes are taken as little-endian, as safetensors stores them (so are all of torch's
        platforms). Views keep the mapping alive; it is unmapped when the last one is gone.
        """
        if nbytes == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(self._mmap, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset).view(shape)

    def contains(self, t: torch.Tensor) -> bool:
        storage = t.untyped_storage()
        return t.device.type == "cpu" and self.start <= storage.data_ptr() and \
            storage.data_ptr() + storage.nbytes() <= self.end

    def fault_in(self, readers: int = 2) -> None:
        """Read one byte of every page (blocking; torch releases the GIL while it reads).

        ``readers`` threads (this one included) take 64 MB chunks in file order, so the disk always
        has more than one read queued: on a cold 2.1 GB file one reader took 2.5 s beside the
        module build, two took 1.1 s (bench/models.py's load). Stops early after :meth:`stop`.
        """
        chunks = iter(range(0, self.nbytes, _CHUNK))
        lock = threading.Lock()

        def read() -> None:
            while not self._stop.is_set():
                with lock:
                    lo = next(chunks, None)
                if lo is None:
                    return
                self._bytes[lo:lo + _CHUNK:PAGE].sum()

        helpers = [threading.Thread(target=read, name="nodegraph-fault-in", daemon=True) for _ in range(readers - 1)]
        for thread in helpers:
            thread.start()
        read()
        for thread in helpers:
            thread.join()

    def fault_in_background(self) -> threading.Thread:
        """:meth:`fault_in` in a daemon thread, started; join it before relying on residency."""
        self._stop.clear()
        thread = threading.Thread(target=self.fault_in, name="nodegraph-fault-in", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Make a running :meth:`fault_in` return after its current step (a load that failed)."""
        self._stop.set()

    def release(self, t: torch.Tensor) -> bool:
        """Drop the pages that lie wholly inside ``t``'s bytes from this process.

        Only for a tensor of this mapping whose values are no longer needed (it has been
        converted); the file is untouched and a later read would fetch the bytes again.
        """
        if not self.contains(t):
            return False
        storage = t.untyped_storage()
        first = -(-storage.data_ptr() // PAGE) * PAGE
        last = (storage.data_ptr() + storage.nbytes()) // PAGE * PAGE
        return _advise(first, last - first, MADV_DONTNEED)
