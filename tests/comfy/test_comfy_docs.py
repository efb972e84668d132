"""docs/comfyui.md stays true: every problem code the ComfyUI modules use is documented, every CLI
command it shows exists."""
from __future__ import annotations

import re
from pathlib import Path

from nodegraph.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "comfyui.md").read_text()


def test_every_problem_code_of_the_comfyui_modules_is_documented():
    source = "".join(p.read_text() for p in (ROOT / "nodegraph" / "comfy").glob("*.py"))
    used = set(re.findall(r'Problem\(\s*"(\w+)"', source))
    documented = set(re.findall(r"`(\w+)`", DOC)) | set(
        re.findall(r"`(\w+)`", (ROOT / "docs" / "graph-format.md").read_text()))
    assert {"bad_comfyui", "comfyui_placeholders"} <= used
    assert used <= documented, sorted(used - documented)


def test_the_commands_the_page_shows_exist():
    commands = set(re.findall(r"^nodegraph ([\w-]+)", DOC, flags=re.M))
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert commands and commands <= set(sub.choices)
