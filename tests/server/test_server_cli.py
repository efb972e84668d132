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


def fetch(url: str, token: str | None = None) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_nodegraph_serve_starts_answers_with_the_token_and_stops_on_ctrl_c(tmp_path):
    env = dict(os.environ, NODEGRAPH_TOKEN="tok3n", NODEGRAPH_TESTING="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodegraph", "serve", "--port", "0", "--input-dir", str(tmp_path / "in"),
         "--output-dir", str(tmp_path / "out")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = read_line(proc)
        assert "(token required)" in line, line
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        assert fetch(url + "/prompt")[0] == 401
        assert fetch(url + "/prompt", "tok3n") == (200, {"exec_info": {"queue_remaining": 0}})
        status, info = fetch(url + "/object_info/KSampler", "tok3n")
        assert status == 200 and info["KSampler"]["output"] == ["LATENT"]
        assert (tmp_path / "in").is_dir() and (tmp_path / "out").is_dir()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
