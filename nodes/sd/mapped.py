"""Page-level control over a memory-mapped model file: make it resident, or hand pages back.

safetensors maps the file and gives tensors that point into the mapping; nothing is read until a
page is touched. Two things the loader wants from the OS (Linux ``madvise``; elsewhere both are
no-ops and the plain page-fault behaviour applies):

- :func:`populate`: fault the whole file in with one system call (``MADV_POPULATE_READ``) when
  the weights are used as they are stored, so a load returns with every weight in RAM, and much
  faster than touching it page by page; run in a thread (the call releases the GIL) it overlaps
  with building the modules.
- :func:`release`: when a weight is converted to another dtype, its source pages are dropped from
  the process (``MADV_DONTNEED``) right after the conversion, so the file's bytes and the converted
  copy are never both resident: the peak is the converted model, not the file plus the model.

Only spans inside the mapping recorded by :class:`Mapping` are ever advised: dropping pages of
ordinary (heap) memory would zero them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import torch

MADV_DONTNEED = 4
MADV_POPULATE_READ = 22  # Linux ≥ 5.14
PAGE = mmap.PAGESIZE


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


@dataclass(frozen=True)
class Mapping:
    """The address span ``[start, end)`` that a file's memory-mapped tensors occupy."""

    start: int
    end: int

    @classmethod
    def of(cls, tensors: Iterable[torch.Tensor]) -> Mapping | None:
        """The span of ``tensors`` (all from one mapped file), or None if there are none."""
        spans = [(t.data_ptr(), t.data_ptr() + t.untyped_storage().nbytes()) for t in tensors
                 if t.device.type == "cpu" and t.untyped_storage().nbytes()]
        if not spans:
            return None
        return cls(min(s for s, _ in spans), max(e for _, e in spans))

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    def contains(self, t: torch.Tensor) -> bool:
        storage = t.untyped_storage()
        return t.device.type == "cpu" and self.start <= storage.data_ptr() and \
            storage.data_ptr() + storage.nbytes() <= self.end

    def populate(self) -> bool:
        """Fault every page of the span in (blocking; releases the GIL). False if the OS cannot."""
        start = self.start - self.start % PAGE
        return _advise(start, self.end - start, MADV_POPULATE_READ)

    def populate_in_background(self) -> threading.Thread:
        """:meth:`populate` in a daemon thread, started; join it before relying on residency."""
        thread = threading.Thread(target=self.populate, name="nodegraph-populate", daemon=True)
        thread.start()
        return thread

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
