"""The `nodegraph` command: run, validate, nodes, plugins, exit codes and messages."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nodegraph import Graph
from nodegraph.cli import _RunDisplay, main
from nodegraph.executor import shared_cache
from nodegraph.events import NodeFinished, NodeStarted, Progress, RunStarted
from nodegraph.format import dumps, save

from .conftest import ngtest

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello.json"
PACKS = Path(__file__).resolve().parent / "packs"


@pytest.fixture(autouse=True)
def test_packs(monkeypatch):
    """The ngtest pack is found through NODEGRAPH_PLUGIN_PATH (as `ngtest.*`); each command
    starts with an empty cache, as a new process does."""
    monkeypatch.setenv("NODEGRAPH_PLUGIN_PATH", str(PACKS))
    shared_cache().clear()


def graph_file(tmp_path: Path, build) -> Path:
    g = Graph()
    build(g)
    return save(g, tmp_path / "g.json")


def cli(*args: str) -> int:
    shared_cache().clear()
    return main([str(a) for a in args])


def test_run_writes_the_hello_example_and_says_where(tmp_path, capsys):
    assert cli("run", HELLO, "--out", tmp_path) == 0
    out = capsys.readouterr().out
    written = tmp_path / "hello_00001.txt"
    assert written.read_text() == "Hello, world! This file was written by NodeGraph's example graph.\n"
    assert f"wrote {written}" in out and "done: 2 node(s) ran, 0 cached" in out


def test_set_names_a_node_by_title_and_parses_the_value_by_kind(tmp_path):
    assert cli("run", HELLO, "--out", tmp_path, "--set", "Greeting.subject=Mars", "--quiet") == 0
    assert "Hello, Mars!" in (tmp_path / "hello_00001.txt").read_text()


def seeded_graph(g: Graph) -> None:
    s = g.add_node("ngtest.Seeded", id="3", title="Sampler")
    g.connect(s, "value", g.add_node("ngtest.Sink"), "value")


def test_set_by_node_id_parses_integers(tmp_path):
    path = graph_file(tmp_path, seeded_graph)
    assert cli("run", path, "--set", "3.seed=42", "--set", "Sampler.steps=7", "-q") == 0
    assert ngtest.SINK[-1] == 42007  # the folder pack is the module the fixtures use


@pytest.mark.parametrize("assignment, words", [
    ("3.seed=abc", "'abc' is not a whole number"),
    ("3.colour=1", "has no param 'colour'; its params are seed, steps"),
    ("9.seed=1", "no node has the id or title '9'"),
    ("seed=1", "write NODE.PARAM=VALUE"),
])
def test_bad_set_arguments_exit_2_with_a_message(tmp_path, capsys, assignment, words):
    path = graph_file(tmp_path, seeded_graph)
    assert cli("run", path, "--set", assignment) == 2
    assert words in capsys.readouterr().err


def test_validate_prints_one_line_per_problem_with_the_file_name(tmp_path, capsys):
    def build(g):
        k = g.add_node("ngtest.KSampler", {"steps": 0, "sampler_name": "nope"}, id="12")
        g.connect(k, "LATENT", g.add_node("ngtest.Sink"), "value")

    path = graph_file(tmp_path, build)
    assert cli("validate", path) == 2
    lines = capsys.readouterr().err.splitlines()
    assert f"{path}: node 12 (ngtest.KSampler) param steps: 0 is below the minimum 1" in lines
    assert any(line.startswith(f"{path}: node 12 (ngtest.KSampler) param sampler_name: 'nope' "
                               "is not one of the choices") for line in lines)


def test_validate_of_a_good_file_says_ok(capsys):
    assert cli("validate", HELLO) == 0
    assert capsys.readouterr().out.strip() == f"{HELLO}: ok"


def test_validate_reports_a_file_that_is_not_json_with_its_position(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "nodegraph",\n"version": 1,')
    assert cli("validate", bad) == 2
    assert f"{bad}: not valid JSON at line 2 column 14" in capsys.readouterr().err


def test_run_of_an_invalid_graph_exits_2_before_running_anything(tmp_path, capsys):
    path = graph_file(tmp_path, lambda g: g.add_node("ngtest.Const"))
    assert cli("run", path) == 2
    assert "no output node" in capsys.readouterr().err


def test_a_failing_node_exits_1_naming_the_node(tmp_path, capsys):
    def build(g):
        f = g.add_node("ngtest.Fail", id="2")
        g.connect(f, "value", g.add_node("ngtest.Sink"), "value")

    assert cli("run", graph_file(tmp_path, build)) == 1
    err = capsys.readouterr().err
    assert "node 2 (ngtest.Fail) failed: RuntimeError: boom" in err and "Traceback" in err


def test_ctrl_c_stops_the_run_cooperatively_and_exits_130(tmp_path, capsys):
    def build(g):
        n = g.add_node("ngtest.SelfInterrupt")
        g.connect(n, "value", g.add_node("ngtest.Sink"), "value")

    assert cli("run", graph_file(tmp_path, build)) == 130
    err = capsys.readouterr().err
    assert "stopping after the current step" in err and "interrupted" in err


def test_run_reads_the_graph_embedded_in_a_png(tmp_path):
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("nodegraph", HELLO.read_text())
    Image.new("RGB", (8, 8)).save(tmp_path / "made.png", pnginfo=info)
    assert cli("run", tmp_path / "made.png", "--out", tmp_path / "o", "-q") == 0
    assert (tmp_path / "o" / "hello_00001.txt").is_file()


def test_run_of_a_missing_file_exits_2(tmp_path, capsys):
    assert cli("run", tmp_path / "nope.json") == 2
    assert "cannot read the file" in capsys.readouterr().err


def test_without_a_terminal_each_node_gets_a_line_and_quiet_prints_nothing(tmp_path, capsys):
    cli("run", HELLO, "--out", tmp_path)
    err = capsys.readouterr().err
    assert "node 1 (example_pack.PromptTemplate) done in" in err
    cli("run", HELLO, "--out", tmp_path, "--quiet")
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == f"wrote {tmp_path / 'hello_00002.txt'}\n"


def test_on_a_terminal_progress_bars_show_nodes_and_steps():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    g = Graph()
    g.add_node("X", id="1")
    show = _RunDisplay(g, quiet=False, stream=stream)
    for event in [RunStarted(1, ("1",)), NodeStarted("1", "X"), Progress("1", "X", 1, 4),
                  Progress("1", "X", 4, 4), NodeFinished("1", "X", 0.1)]:
        show(event)
    show.close()
    text = stream.getvalue()
    assert "nodes" in text and "1 (X)" in text and "4/4" in text


def test_nodes_lists_every_type_and_json_gives_the_specs(capsys):
    assert cli("nodes") == 0
    out = capsys.readouterr().out
    assert "example_pack.SaveText" in out and "[output]" in out
    assert cli("nodes", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    types = {n["type"]: n for n in data["nodes"]}
    assert types["example_pack.PromptTemplate"]["params"][0]["multiline"] is True
    assert data["types"]["IMAGE"]["color"].startswith("#")


def test_plugins_lists_failed_packs_with_their_traceback(tmp_path, monkeypatch, capsys):
    broken = tmp_path / "broken_pack"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.setenv("NODEGRAPH_PLUGIN_PATH", str(tmp_path))
    assert cli("plugins") == 0
    captured = capsys.readouterr()
    assert "broken_pack  failed  folder" in captured.out and "needs libfoo" in captured.out
    assert "Traceback" in captured.out
    assert "warning: node pack 'broken_pack' failed to load" in captured.err
    assert "example_pack  loaded" in captured.out


def test_help_documents_the_exit_codes_and_python_m_works():
    out = subprocess.run([sys.executable, "-m", "nodegraph", "--help"], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    for code, words in [("0", "success"), ("1", "a node failed"), ("2", "invalid input"),
                        ("130", "interrupted")]:
        assert f"  {code} " in out and words in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli() == 2
    assert "run" in capsys.readouterr().out


def test_the_written_hello_example_is_canonical():
    from nodegraph.format import load

    assert dumps(load(HELLO)) == HELLO.read_text()


def test_run_goes_on_beside_a_broken_node_no_output_needs_and_warns_about_it(tmp_path, capsys):
    def build(g):
        c = g.add_node("ngtest.Const", {"value": 4})
        g.connect(c, "value", g.add_node("ngtest.Sink"), "value")
        g.add_node("ngtest.Const", {"value": "x"}, id="9")  # pasted beside, connected to nothing

    assert cli("run", graph_file(tmp_path, build)) == 0
    captured = capsys.readouterr()
    assert ("warning: node 9 (ngtest.Const) param value: 'x' is a string, expected a whole number "
            "such as 20 (no output needs this node, so it does not run)") in captured.err
    assert "done: 2 node(s) ran" in captured.out and ngtest.SINK == [4]
