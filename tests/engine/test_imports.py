"""The engine must not import torch or Qt when it is imported (the CLI and tests stay light)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_engine_loads_neither_torch_nor_qt():
    code = (
        "import sys\n"
        "import nodegraph, nodegraph.api, nodegraph.cli, nodegraph.executor, nodegraph.format\n"
        "import nodegraph.graph, nodegraph.plugins, nodegraph.registry, nodegraph.validate\n"
        "heavy = [m for m in ('torch', 'PySide6', 'numpy', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_loading_the_example_pack_and_validating_stays_torch_free():
    code = (
        "import sys\n"
        "from nodegraph import api\n"
        "from nodegraph.plugins import load_registry, REPO_PLUGINS\n"
        "reg = load_registry(builtin=False, entry_points=False, folders=[REPO_PLUGINS])\n"
        "s = api.Session(reg)\n"
        "g = s.load('examples/hello.json')\n"
        "assert s.validate(g) == []\n"
        "assert 'torch' not in sys.modules and 'PySide6' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
