"""The docs stay true: every hook is documented, the API example runs."""
from __future__ import annotations

import re
import runpy
from pathlib import Path

from nodegraph import hookspecs

ROOT = Path(__file__).resolve().parents[2]


def test_every_hook_has_its_own_section_in_the_plugin_docs():
    text = (ROOT / "docs" / "plugins.md").read_text()
    documented = set(re.findall(r"^### `(nodegraph_\w+)`", text, flags=re.M))
    hooks = {name for name in dir(hookspecs) if name.startswith("nodegraph_")}
    assert hooks, "no hooks found"
    assert hooks <= documented, f"undocumented hooks: {sorted(hooks - documented)}"
    assert documented <= hooks, f"documented hooks that do not exist: {sorted(documented - hooks)}"


def test_every_hook_section_shows_its_signature_and_an_example():
    text = (ROOT / "docs" / "plugins.md").read_text()
    for hook in (n for n in dir(hookspecs) if n.startswith("nodegraph_")):
        section = text.split(f"### `{hook}`", 1)[1].split("\n### ", 1)[0]
        assert f"def {hook}()" in section and "**When:**" in section and "**Returns**" in section


def test_the_api_example_runs_and_writes_its_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "docs" / "api-example.py"), run_name="__main__")
    out = capsys.readouterr().out
    written = tmp_path / "output" / "api-example_00001.txt"
    assert written.read_text() == "a photo of a lighthouse, oil paint\n"
    assert "RunStarted" in out and "RunFinished" in out and "2 node(s) ran" in out
    assert (tmp_path / "output" / "api-example.json").is_file()
    assert len((ROOT / "docs" / "api-example.py").read_text().splitlines()) <= 12


def test_every_problem_code_the_engine_uses_is_documented():
    source = "".join((ROOT / "nodegraph" / f).read_text()
                     for f in ("format.py", "validate.py", "registry.py", "executor.py"))
    used = set(re.findall(r'Problem\(\s*"(\w+)"', source))
    used |= set(re.findall(r'return "(\w+)", ', source)) | set(re.findall(r'code="(\w+)"', source))
    documented = set(re.findall(r"`(\w+)`", (ROOT / "docs" / "graph-format.md").read_text()))
    assert used and used <= documented, f"undocumented problem codes: {sorted(used - documented)}"
