"""Local worker processes end to end. The real txt2img graph on tiny random weights for exactly
once / a killed worker / a killed coordinator; torch-free test nodes for the rest."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodegraph import format as graph_format
from nodegraph.batch import run_batch
from nodegraph.batch.writer import read_jsonl

from .conftest import PAUSE, TXT2IMG_SWEEPS, blob_graph, leftovers, output_files, txt2img_graph

BLOB_SWEEPS = ["Sampler.seed=0:4", "2.prompt=a fox,an owl"]  # 8 items


def contents(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in output_files(folder)}


def sd_batch(session, out, **kw):
    kw.setdefault("handle_sigint", False)
    return run_batch(txt2img_graph(PAUSE), out, TXT2IMG_SWEEPS, session=session, **kw)


def blob_batch(session, out, graph, **kw):
    kw.setdefault("handle_sigint", False)
    return run_batch(graph, out, BLOB_SWEEPS, session=session, **kw)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as dead
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


# -- the real graph ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_workers_write_each_output_once_with_single_process_bytes(sd_session, tmp_path,
                                                                      sd_reference):
    result = sd_batch(sd_session, tmp_path / "out", workers=2)
    assert result.complete and not result.failed
    assert contents(tmp_path / "out") == sd_reference
    records = list(read_jsonl(tmp_path / "out" / "results.jsonl"))
    assert sorted(r["index"] for r in records) == list(range(8))
    assert {r["worker"] for r in records} == {"local-1", "local-2"}
    assert {r["threads"] for r in records} == {1}  # 2 cores shared by 2 workers
    assert result.model_loads == 2  # once per worker, not per item
    assert leftovers(tmp_path / "out") == []


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_is_replaced(sd_session, tmp_path, sd_reference):
    pids: dict[str, int] = {}
    finished: dict[str, int] = {}
    killed: list[int] = []

    def kill_midway(event):
        if event["event"] == "worker_ready":
            pids[event["worker"]] = event["pid"]
        elif event["event"] == "item_done":
            finished[event["worker"]] = finished.get(event["worker"], 0) + 1
        elif event["event"] == "item_started" and not killed and finished.get(event["worker"]):
            killed.append(event["index"])  # a worker that has loaded its model, mid-item
            os.kill(pids[event["worker"]], signal.SIGKILL)

    result = sd_batch(sd_session, tmp_path / "out", workers=2, on_event=kill_midway)
    assert killed
    assert result.complete and result.retries == 1 and result.replacements == 1
    assert contents(tmp_path / "out") == sd_reference
    assert result.workers_started == 3
    # One model load per worker that ran an item (the replacement may start after the other worker
    # has done the rest: then it loads nothing).
    ran = {r["worker"] for r in read_jsonl(tmp_path / "out" / "results.jsonl")}
    assert result.model_loads == len(ran) and len(ran) >= 2, (result.model_loads, sorted(ran))
    assert leftovers(tmp_path / "out") == []
    assert wait_gone(list(pids.values()))


def start_cli(graph_file: Path, out: Path, models: Path, sweeps: list[str], *extra: str
              ) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nodegraph", "batch", str(graph_file), "--out", str(out),
           "--models", str(models), "--progress", "json", *extra]
    for s in sweeps:
        cmd += ["--sweep", s]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(proc: subprocess.Popen, done: int) -> list[int]:
    """Read progress events until ``done`` items finished; returns the worker pids seen."""
    pids, count = [], 0
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "worker_ready":
            pids.append(event["pid"])
        count += event["event"] == "item_done"
        if count >= done:
            break
    return pids


@pytest.mark.slow
def test_killed_coordinator_resumes_to_exactly_every_output(sd_session, sd_models, tmp_path,
                                                           sd_reference):
    graph_file = graph_format.save(txt2img_graph(PAUSE), tmp_path / "g.json")
    out = tmp_path / "out"
    proc = start_cli(graph_file, out, sd_models, TXT2IMG_SWEEPS, "--workers", "2",
                     "--dtype", "fp32", "--device", "cpu")
    pids = read_until(proc, done=3)
    proc.kill()
    proc.wait()
    assert wait_gone(pids), "workers outlived their coordinator"
    assert 3 <= len(output_files(out)) < 8
    result = sd_batch(sd_session, out, workers=2, resume=True)
    assert result.complete and result.skipped >= 3
    assert contents(out) == sd_reference
    records = list(read_jsonl(out / "results.jsonl"))
    assert sorted({r["index"] for r in records}) == list(range(8))
    assert leftovers(out) == []


# -- torch-free test nodes ----------------------------------------------------------------------------
def test_graph_errors_are_reported_per_item_and_not_retried(session, tmp_path):
    result = blob_batch(session, tmp_path / "out", blob_graph(fail_seed=2), workers=2)
    assert sorted(result.failed) == [4, 5]  # seed 2 × two prompts
    errors = list(read_jsonl(tmp_path / "out" / "errors.jsonl"))
    assert sorted(e["index"] for e in errors) == [4, 5]
    assert all(e["kind"] == "graph" and "refuses" in e["error"] and e["attempts"] == 1 for e in errors)
    assert len(output_files(tmp_path / "out")) == 6
    assert result.retries == 0


def test_an_item_that_crashes_its_worker_is_given_up_after_three_attempts(session, tmp_path):
    result = blob_batch(session, tmp_path / "out", blob_graph(crash_seed=1), workers=2)
    assert sorted(result.failed) == [2, 3]
    assert all("given up after 3 attempts" in e for e in result.failed.values())
    assert len(output_files(tmp_path / "out")) == 6


def test_ctrl_c_finishes_running_items_and_leaves_a_resumable_batch(session, tmp_path, models):
    reference = tmp_path / "reference"
    blob_batch(session, reference, blob_graph(delay=0.2), workers=0)
    graph_file = graph_format.save(blob_graph(delay=0.2), tmp_path / "g.json")
    out = tmp_path / "out"
    proc = start_cli(graph_file, out, models, BLOB_SWEEPS, "--workers", "2")
    read_until(proc, done=2)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    finish = json.loads(rest.strip().splitlines()[-1])
    assert finish["event"] == "finish" and finish["interrupted"] is True
    assert len(output_files(out)) < 8
    # every started item was finished and recorded: files and results agree
    records = list(read_jsonl(out / "results.jsonl"))
    assert sorted(f["path"] for r in records for f in r["files"]) == output_files(out)
    result = blob_batch(session, out, blob_graph(delay=0.2), workers=2, resume=True)
    assert result.complete and contents(out) == contents(reference)


def test_cli_refuses_to_resume_a_changed_graph(tmp_path, models):
    out = tmp_path / "out"
    first = graph_format.save(blob_graph(), tmp_path / "g1.json")
    proc = start_cli(first, out, models, BLOB_SWEEPS, "--workers", "0")
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    changed = blob_graph()
    changed.set_param("2", "width", 16)
    second = graph_format.save(changed, tmp_path / "g2.json")
    proc = start_cli(second, out, models, BLOB_SWEEPS, "--resume")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "graph changed" in err and "node 2 param width: (not set) → 16" in err


def test_each_local_worker_sees_one_gpu_and_a_replacement_takes_the_dead_ones(session, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    events = []
    result = run_batch(blob_graph(crash_seed=1, delay=0.2), tmp_path / "out", ["2.seed=0:6"],
                       session=session,
                       on_event=events.append, handle_sigint=False, max_attempts=1)
    ready = {e["worker"]: e["gpu"] for e in events if e["event"] == "worker_ready"}
    # one worker per GPU (which of the first two is ready first varies)
    assert result.workers_started == 3 and {ready["local-1"], ready["local-2"]} == {"3", "5"}
    dead = next(e["worker"] for e in events if e["event"] == "worker_lost")
    replacement = [w for w in ready if w not in ("local-1", "local-2")][0]
    assert ready[replacement] == ready[dead]
