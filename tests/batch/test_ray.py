"""A real local Ray cluster of two simulated nodes on 127.0.0.1: a node killed while it runs an
item, and a coordinator killed mid-run then resumed. Every process the tests start is theirs
to stop: stragglers (Ray's agents can outlive their raylet) are killed at the end."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip(
    "ray", reason="Ray is not installed: pip install 'nodegraph[ray]' to run the Ray integration tests")

import psutil  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from nodegraph import format as graph_format  # noqa: E402
from nodegraph.batch import run_batch  # noqa: E402
from nodegraph.batch.writer import read_jsonl  # noqa: E402

from .conftest import (PAUSE, TXT2IMG_SWEEPS, leftovers, output_files,  # noqa: E402
                       txt2img_graph)

pytestmark = pytest.mark.slow
HEALTH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 200,
          "health_check_timeout_ms": 200, "health_check_failure_threshold": 3}
NODE = {"num_cpus": 2, "node_ip_address": "127.0.0.1", "include_dashboard": False,
        "dashboard_host": "127.0.0.1"}


def descendants(root: int) -> set[int]:
    """Every process below ``root``."""
    return {p.pid for p in psutil.Process(root).children(recursive=True)}


class LocalCluster:
    """A head node and one more node, each with 2 CPUs, all on loopback."""

    def __init__(self):
        self.seen: set[int] = set()
        self.cluster = Cluster(initialize_head=True, head_node_args={**NODE, "_system_config": HEALTH})
        self.other = self.add()

    def add(self):
        node = self.cluster.add_node(**NODE)
        self.cluster.wait_for_nodes()
        self.seen |= descendants(os.getpid())
        return node

    @property
    def address(self) -> str:
        return self.cluster.address

    def ensure_two_nodes(self) -> None:
        if self.other is None:
            self.other = self.add()

    def kill_other(self) -> None:
        self.seen |= descendants(os.getpid())
        self.cluster.remove_node(self.other, allow_graceful=False)
        self.other = None

    def other_node_id(self) -> str:
        return self.other.node_id

    def shutdown(self) -> None:
        if ray.is_initialized():
            ray.shutdown()
        self.seen |= descendants(os.getpid())
        self.cluster.shutdown()
        for pid in self.seen:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    c = LocalCluster()
    try:
        yield c
    finally:
        c.shutdown()


def contents(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in output_files(folder)}


def batch(session, out, **kw):
    kw.setdefault("handle_sigint", False)
    return run_batch(txt2img_graph(PAUSE), out, TXT2IMG_SWEEPS, session=session, **kw)


def test_a_killed_node_loses_no_item_and_writes_no_duplicate(cluster, sd_session, tmp_path,
                                                             sd_reference):
    cluster.ensure_two_nodes()
    victim = cluster.other_node_id()
    on_victim: set[str] = set()
    finished: dict[str, int] = {}
    killed = []

    def kill_node(event):
        if event["event"] == "worker_ready" and event["node"] == victim:
            on_victim.add(event["worker"])
        elif event["event"] == "item_done":
            finished[event["worker"]] = finished.get(event["worker"], 0) + 1
        elif (event["event"] == "item_started" and event["worker"] in on_victim and not killed
              and finished.get(event["worker"], 0) >= 1):
            killed.append(event["index"])
            cluster.kill_other()

    result = batch(sd_session, tmp_path / "out", ray=cluster.address, workers=2, on_event=kill_node)
    assert killed, "no item ran on the node to kill"
    assert result.complete and not result.failed
    assert result.retries == 1 and result.replacements == 1
    assert contents(tmp_path / "out") == sd_reference
    assert result.workers_started == 3
    assert leftovers(tmp_path / "out") == []
    records = list(read_jsonl(tmp_path / "out" / "results.jsonl"))
    assert sorted(r["index"] for r in records) == list(range(8))
    # The model loads once per worker that runs an item. Whether the replacement runs one depends
    # on how soon Ray starts it: the other worker may finish the rest first (then it loads nothing).
    ran = {r["worker"] for r in records}
    assert result.model_loads == len(ran) and len(ran) >= 2, (result.model_loads, sorted(ran))


def test_a_killed_coordinator_resumes_to_exactly_every_output(cluster, sd_session, sd_models,
                                                             tmp_path, sd_reference):
    cluster.ensure_two_nodes()
    graph_file = graph_format.save(txt2img_graph(PAUSE), tmp_path / "g.json")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "nodegraph", "batch", str(graph_file), "--out", str(out),
           "--models", str(sd_models), "--progress", "json", "--ray", cluster.address,
           "--workers", "2", "--dtype", "fp32", "--device", "cpu"]
    for s in TXT2IMG_SWEEPS:
        cmd += ["--sweep", s]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pids, done = [], 0
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "worker_ready":
                pids.append(event["pid"])
            done += event["event"] == "item_done"
            if done >= 3:
                break
    finally:
        proc.kill()
        proc.wait()
    assert 3 <= len(output_files(out)) < 8
    deadline = time.monotonic() + 30  # Ray ends a dead driver's actors
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    result = batch(sd_session, out, ray=cluster.address, workers=2, resume=True)
    assert result.complete and result.skipped >= 3
    assert contents(out) == sd_reference
    records = list(read_jsonl(out / "results.jsonl"))
    assert sorted({r["index"] for r in records}) == list(range(8))
    assert leftovers(out) == []
