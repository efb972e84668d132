"""``nodegraph serve`` under a ComfyUI client: latency, throughput without loss, memory.

It starts the real server (``python -m nodegraph serve --port 0``, the built-in nodes, a temporary
input and output folder) and, beside it, a reference process that holds just the engine (a session
with its registry loaded), then talks to the server with aiohttp's client as a ComfyUI script does:

- ``submit_to_executing_ms``: from sending ``POST /prompt`` to receiving the websocket's first
  ``executing`` message of that prompt, on an idle queue (median of 30; a tiny prompt, LoadImage →
  SaveImage with a new file name each time, so one node really runs; two warm-up prompts first).
  Reference: a bare ``GET /prompt`` round trip on the same connection (``http_roundtrip_ms``).
- ``object_info_ms``: ``GET /object_info`` with every built-in node (median of 30 after one warm-up).
- ``queued_100_lost``: 100 tiny prompts posted at once (concurrently); a prompt is lost unless its
  socket saw exactly one ``execution_success`` and ``/history`` holds it as a success.
- ``idle_rss_over_engine_mb``: the server's resident memory when idle (started, ``/object_info``
  served, nothing run yet) minus the reference engine process's.

Targets (issue 20): submit_to_executing_ms <= 20, object_info_ms <= 50, queued_100_lost = 0,
idle_rss_over_engine_mb <= 150. Timings are wall clock on a shared machine: the script prints the
load average before and after. The last line printed is one JSON object.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
FOX = ROOT / "examples" / "input" / "fox_sketch.png"
REPEATS = 30
CLIENT = "bench"


def tiny_prompt(prefix: str) -> dict:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": "fox_sketch.png"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update({"PYTHONPATH": str(ROOT) + os.pathsep + e.get("PYTHONPATH", ""), "NODEGRAPH_TESTING": "1",
              "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return e


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodegraph", "serve", "--port", "0", "--input-dir", str(tmp / "input"),
         "--output-dir", str(tmp / "output"), "--device", "cpu", "--dtype", "fp32"],
        cwd=tmp, env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://\S+", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, match.group(0)


def start_engine_reference() -> subprocess.Popen:
    code = ("from nodegraph.api import Session\nimport sys\nSession().registry\n"
            "print('ready', flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def follow_until(ws: aiohttp.ClientWebSocketResponse, prompt_id: str, kind: str, node_set: bool) -> None:
    while True:
        msg = await ws.receive(timeout=120)
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        data = json.loads(msg.data)
        d = data["data"]
        if data["type"] == kind and d.get("prompt_id") == prompt_id and (d.get("node") is not None) == node_set:
            return


async def post(s: aiohttp.ClientSession, url: str, prompt: dict) -> str:
    async with s.post(url + "/prompt", json={"prompt": prompt, "client_id": CLIENT}) as r:
        body = await r.json()
        assert r.status == 200, body
        return body["prompt_id"]


async def latency(s: aiohttp.ClientSession, url: str, ws: aiohttp.ClientWebSocketResponse) -> tuple[float, float]:
    samples, rounds = [], []
    for i in range(REPEATS + 2):
        t0 = time.perf_counter()
        async with s.get(url + "/prompt") as r:
            await r.read()
        rounds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pid = await post(s, url, tiny_prompt(f"latency/{i}"))
        await follow_until(ws, pid, "executing", True)
        samples.append(time.perf_counter() - t0)
        await follow_until(ws, pid, "executing", False)
    return statistics.median(samples[2:]) * 1000, statistics.median(rounds[2:]) * 1000


async def object_info(s: aiohttp.ClientSession, url: str) -> float:
    samples = []
    for _ in range(REPEATS + 1):
        t0 = time.perf_counter()
        async with s.get(url + "/object_info") as r:
            info = await r.json()
        samples.append(time.perf_counter() - t0)
    assert "KSampler" in info
    return statistics.median(samples[1:]) * 1000


async def hundred(s: aiohttp.ClientSession, url: str, ws: aiohttp.ClientWebSocketResponse) -> int:
    ids = await asyncio.gather(*(post(s, url, tiny_prompt(f"hundred/{i}")) for i in range(100)))
    successes: dict[str, int] = {}
    done: set[str] = set()
    while len(done) < len(ids):
        msg = await ws.receive(timeout=300)
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        data = json.loads(msg.data)
        d = data["data"]
        if data["type"] == "execution_success":
            successes[d["prompt_id"]] = successes.get(d["prompt_id"], 0) + 1
        elif data["type"] == "executing" and d["node"] is None:
            done.add(d["prompt_id"])
    async with s.get(url + "/history") as r:
        history = await r.json()
    ok = [p for p in ids if successes.get(p) == 1 and history.get(p, {}).get("status", {}).get("status_str") == "success"]
    return len(ids) - len(ok)


async def measure(url: str, server_pid: int, engine_pid: int) -> dict:
    async with aiohttp.ClientSession() as s:
        info_ms = await object_info(s, url)
        idle = rss_mb(server_pid) - rss_mb(engine_pid)
        figures = {"server_idle_rss_mb": round(rss_mb(server_pid), 1), "engine_rss_mb": round(rss_mb(engine_pid), 1)}
        ws = await s.ws_connect(url.replace("http", "ws", 1) + "/ws", params={"clientId": CLIENT})
        submit_ms, roundtrip_ms = await latency(s, url, ws)
        lost = await hundred(s, url, ws)
        await ws.close()
    return {"submit_to_executing_ms": round(submit_ms, 2), "object_info_ms": round(info_ms, 2),
            "queued_100_lost": lost, "idle_rss_over_engine_mb": round(idle, 1),
            "http_roundtrip_ms": round(roundtrip_ms, 2), **figures}


def main() -> None:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "input").mkdir()
        (tmp / "input" / "fox_sketch.png").write_bytes(FOX.read_bytes())
        engine = start_engine_reference()
        server, url = start_server(tmp)
        try:
            figures = asyncio.run(measure(url, server.pid, engine.pid))
        finally:
            server.terminate()
            engine.terminate()
            server.wait(30)
            engine.wait(30)
    figures["load_before"] = [round(x, 2) for x in load_before]
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    figures["cpus"] = os.cpu_count()
    print(f"server {url}: POST /prompt -> first 'executing' {figures['submit_to_executing_ms']} ms "
          f"(HTTP round trip {figures['http_roundtrip_ms']} ms); /object_info {figures['object_info_ms']} ms; "
          f"100 queued at once: {figures['queued_100_lost']} lost; idle RSS {figures['server_idle_rss_mb']} MB "
          f"vs engine {figures['engine_rss_mb']} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
