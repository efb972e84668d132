"""Fixtures of the server tests: a real server on a free port with the torch-free test nodes."""
from __future__ import annotations

import pytest
from serverkit import GATES, ngtest, ngtest_registry, start_server


@pytest.fixture(autouse=True)
def _reset():
    ngtest.CALLS.clear()
    ngtest.SINK.clear()
    yield
    for gate in GATES.values():
        gate.set()
    GATES.clear()


@pytest.fixture
def server(tmp_path):
    """A server running the test nodes (torch-free): its url, engine and folders under tmp_path."""
    running = start_server(tmp_path, ngtest_registry())
    yield running
    for gate in GATES.values():
        gate.set()
    running.thread.stop()


@pytest.fixture
def make_server(tmp_path):
    """``make_server(**config)`` for servers with other settings (token, CORS, limits)."""
    started = []

    def make(registry=None, **config):
        running = start_server(tmp_path, registry or ngtest_registry(), **config)
        started.append(running)
        return running

    yield make
    for gate in GATES.values():
        gate.set()
    for running in started:
        running.thread.stop()
