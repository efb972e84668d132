"""The editor's Batch dialog, Qt-free: the command line it runs (gui.batch.command)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gui.batch.command import BatchRequest, build_argv
from gui.batch.sweeps import SweepRow

ROOT = Path(__file__).resolve().parents[2]


def test_the_dialogs_plain_parts_import_without_qt():
    code = ("import sys\n"
            "import gui.batch.command, gui.batch.report, gui.batch.state, gui.batch.stream\n"
            "import gui.batch.sweeps\n"
            "assert 'PySide6' not in sys.modules, 'a plain part of the Batch dialog imports Qt'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_argv_runs_this_nodegraph_with_the_sweeps_in_table_order(tmp_path):
    request = BatchRequest(graph_file=tmp_path / "g.json", out_dir=tmp_path / "out",
                           sweeps=[SweepRow("2", "seed", "0:3"), SweepRow("2", "prompt", "a, b")],
                           workers=2)
    assert build_argv(request, python="/venv/bin/python") == [
        "/venv/bin/python", "-m", "nodegraph", "batch", str(tmp_path / "g.json"),
        "--out", str(tmp_path / "out"), "--sweep", "2.seed=0:3", "--sweep", "2.prompt=a, b",
        "--workers", "2", "--progress", "json"]


def test_argv_for_ray_resume_models_device_and_a_relative_values_file(tmp_path):
    request = BatchRequest(graph_file=tmp_path / "g.json", out_dir=tmp_path / "out",
                           sweeps=[SweepRow("6", "text", "@prompts.txt")], ray=" 10.0.0.1:6379 ",
                           resume=True, models_dirs=[tmp_path / "m"], device="cpu", dtype="fp32",
                           base_dir=tmp_path / "graphs")
    argv = build_argv(request, python="py")
    assert argv[5:] == ["--out", str(tmp_path / "out"),
                        "--sweep", f"6.text=@{tmp_path / 'graphs' / 'prompts.txt'}",
                        "--ray", "10.0.0.1:6379", "--resume", "--models", str(tmp_path / "m"),
                        "--device", "cpu", "--dtype", "fp32", "--progress", "json"]
    assert "--workers" not in argv  # Ray picks its own count
