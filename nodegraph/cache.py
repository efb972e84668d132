"""The executor's cache of node outputs: a bounded LRU map from a node's signature to its outputs.

:func:`shared_cache` is the process-wide one, which the default session and every Executor made
without a cache of its own use.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Any, NamedTuple


def estimate_nbytes(obj: Any, _depth: int = 0) -> int:
    """Rough memory size of a node output: ``nbytes`` of arrays/tensors (numpy, torch — without
    importing them), summed through dicts, lists and tuples; strings and bytes by length."""
    n = getattr(obj, "nbytes", None)
    if type(n) is int:
        return n
    if isinstance(obj, (str, bytes, bytearray)):
        return len(obj)
    if _depth < 4:
        if isinstance(obj, dict):
            return sum(estimate_nbytes(v, _depth + 1) for v in itertools.islice(obj.values(), 1000))
        if isinstance(obj, (list, tuple)):
            return sum(estimate_nbytes(v, _depth + 1) for v in itertools.islice(obj, 1000))
    return 0


class CacheEntry(NamedTuple):
    """A node's cached outputs, what it showed (``ui``) and their estimated size."""

    outputs: tuple[Any, ...]
    ui: dict[str, Any]
    nbytes: int


class OutputCache:
    """Bounded LRU map signature → node outputs; the least recently used entries go first when
    there are more than ``max_entries`` or their estimated size exceeds ``max_bytes``. Thread-safe."""

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 4 << 30):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str) -> CacheEntry | None:
        # No lock: dict lookups and OrderedDict.move_to_end are atomic under the GIL; if another
        # thread evicts the key in between, it simply counts as a miss.
        entry = self._data.get(key)
        if entry is not None:
            try:
                self._data.move_to_end(key)
            except KeyError:
                entry = None
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: str, entry: CacheEntry) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            if entry.nbytes > self.max_bytes or self.max_entries <= 0:
                return
            self._data[key] = entry
            self.nbytes += entry.nbytes
            while len(self._data) > self.max_entries or self.nbytes > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self.nbytes -= dropped.nbytes
                self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.nbytes = 0


_SHARED_CACHE = OutputCache()


def shared_cache() -> OutputCache:
    """The process-wide cache every Executor uses unless given its own."""
    return _SHARED_CACHE
