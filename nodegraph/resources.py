"""What node packs keep from run to run — loaded models, model-folder listings — owned by a session.

The engine does not know what packs keep; it gives each :class:`~nodegraph.session.Session` one
:class:`Resources`, and every run of the session carries it in ``RunOptions.resources``, where a
node function, a fingerprint or a choices provider finds it (:func:`resources_for`). A fresh
session starts with nothing loaded; the default session (and any RunOptions that names none) uses
:func:`default_resources`.

    from nodegraph.resources import resources_for

    manager = resources_for(ctx.options).get("mypack.models", ModelStore)

Keys are strings named after the pack (``"mypack.models"``), so packs do not collide.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .context import RunOptions

T = TypeVar("T")


class Resources:
    """Named objects a session's runs share (thread-safe), and a memo for the length of a run.

    ``get(key, make)`` returns the object kept under ``key``, made by ``make()`` the first time;
    ``replace(key, value)`` swaps it (e.g. a model manager for another device). While a run is
    going (:meth:`run_scope`), :attr:`run_memo` is a dict packs may memoise answers in that must
    not change during the run — which file a model name means — and None otherwise.
    """

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._runs = 0
        self.run_memo: dict[Any, Any] | None = None

    def get(self, key: str, make: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._items:
                self._items[key] = make()
            return self._items[key]

    def peek(self, key: str) -> Any:
        """The object kept under ``key``, or None (nothing is made)."""
        with self._lock:
            return self._items.get(key)

    def replace(self, key: str, value: Any) -> Any:
        """Keep ``value`` under ``key`` (None: drop what is kept); returns what was kept before."""
        with self._lock:
            previous = self._items.pop(key, None)
            if value is not None:
                self._items[key] = value
            return previous

    def clear(self) -> None:
        """Drop everything kept (loaded models are freed once nothing else refers to them)."""
        with self._lock:
            self._items.clear()

    @contextmanager
    def run_scope(self) -> Iterator[None]:
        """The length of one run: :attr:`run_memo` starts empty with the first run going and is
        dropped when the last one ends (runs of one session on two threads share it)."""
        with self._lock:
            if self._runs == 0:
                self.run_memo = {}
            self._runs += 1
        try:
            yield
        finally:
            with self._lock:
                self._runs -= 1
                if self._runs == 0:
                    self.run_memo = None


_DEFAULT = Resources()


def default_resources() -> Resources:
    """The resources of the default session, and of runs whose options name none."""
    return _DEFAULT


def resources_for(options: RunOptions | None) -> Resources:
    """The resources a run's options carry (the default ones when they carry none)."""
    found = options.resources if options is not None else None
    return found if found is not None else _DEFAULT
