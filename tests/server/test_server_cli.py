"""``nodegraph serve`` as a user starts it: it says where it listens, answers ComfyUI's endpoints
with the token from NODEGRAPH_TOKEN (and only with it), and stops cleanly on Ctrl-C."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

from serverkit import ROOT


def read_line(proc: subprocess.Popen, timeout: float = 60.0) -> str:
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not got:
        proc.kill()
        raise AssertionError(f"no output within {timeout} s")
    return got[0]


def fetch(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def serve(tmp_path, **env_vars: str) -> subprocess.Popen:
    """``nodegraph serve --port 0`` in a subprocess (stderr to a file, stdout readable line by line)."""
    env = dict(os.environ, NODEGRAPH_TESTING="1", PYTHONPATH=str(ROOT), **env_vars)
    with (tmp_path / "stderr.txt").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "nodegraph", "serve", "--port", "0", "--input-dir", str(tmp_path / "in"),
             "--output-dir", str(tmp_path / "out")],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=err, text=True)


def test_nodegraph_serve_starts_runs_prompts_with_the_token_and_stops_on_ctrl_c(tmp_path):
    proc = serve(tmp_path, NODEGRAPH_TOKEN="tok3n")
    try:
        line = read_line(proc)
        assert "(token required)" in line, line
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        assert read_line(proc).startswith(f"input: {(tmp_path / 'in').resolve()}  output: ")
        assert fetch(url + "/prompt")[0] == 401
        assert fetch(url + "/prompt", "tok3n") == (200, {"exec_info": {"queue_remaining": 0}})
        status, info = fetch(url + "/object_info/KSampler", "tok3n")
        assert status == 200 and info["KSampler"]["output"] == ["LATENT"]
        prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "fox_sketch.png"}},
                  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "cli"}}}
        status, reply = fetch(url + "/prompt", "tok3n", {"prompt": prompt})
        assert status == 200, reply
        assert read_line(proc).startswith(f"got prompt {reply['prompt_id']} (2 nodes)")
        assert read_line(proc).startswith(f"prompt {reply['prompt_id']}: success in ")
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["cli_00001_.png"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_nodegraph_serve_says_when_the_port_is_taken(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, NODEGRAPH_TESTING="1", PYTHONPATH=str(ROOT))
        proc = subprocess.run([sys.executable, "-m", "nodegraph", "serve", "--port", str(port),
                               "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
