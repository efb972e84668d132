"""Bad input meets the engine and its commands: every case ends in a message of ours that names the
place and says what to do — never a bare Python exception — with the documented exit code.

A corpus generated here: errors raised on purpose and bugs, node ids of 5000 digits, output paths
that are folders or read-only, unreadable plugin folders, lone surrogates, a full disk, allocations
that fail, and outputs a node could not fill.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import unprivileged

from nodegraph import Graph, NodeExecutionError, WriteError
from nodegraph.cli import main
from nodegraph.executor import shared_cache
from nodegraph.format import save

ROOT = Path(__file__).resolve().parents[2]
PACKS = Path(__file__).resolve().parent / "packs"


@pytest.fixture(autouse=True)
def test_packs(monkeypatch):
    monkeypatch.setenv("NODEGRAPH_PLUGIN_PATH", str(PACKS))
    monkeypatch.delenv("NODEGRAPH_DEBUG", raising=False)
    shared_cache().clear()


def cli(*args: object) -> int:
    shared_cache().clear()
    return main([str(a) for a in args])


def graph_with(tmp_path: Path, type_id: str, params: dict | None = None, node_id: str = "2") -> Path:
    g = Graph()
    n = g.add_node(type_id, params or {}, id=node_id)
    g.connect(n, "value", g.add_node("ngtest.Sink", id="9"), "value")
    return save(g, tmp_path / "g.json")


# -- errors raised on purpose print their message; bugs their traceback ---------------------------------
def test_an_error_raised_on_purpose_prints_its_message_without_a_traceback(tmp_path, capsys):
    path = graph_with(tmp_path, "ngtest.Refuse", {"why": "the file is damaged; copy it again"})
    assert cli("run", path) == 1
    err = capsys.readouterr().err
    assert f"{path}: node 2 (ngtest.Refuse) failed: the file is damaged; copy it again" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("how", ["--verbose", "NODEGRAPH_DEBUG=1"])
def test_verbose_or_debug_shows_the_traceback_of_an_error_raised_on_purpose(how, tmp_path, capsys,
                                                                               monkeypatch):
    path = graph_with(tmp_path, "ngtest.Refuse")
    args = ["run", path]
    if how == "--verbose":
        args.append(how)
    else:
        monkeypatch.setenv(*how.split("="))
    assert cli(*args) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "NodeError: the input is not usable" in err


def test_a_bug_in_a_node_prints_its_traceback(tmp_path, capsys):
    assert cli("run", graph_with(tmp_path, "ngtest.Fail")) == 1
    err = capsys.readouterr().err
    assert "failed: RuntimeError: boom" in err and "Traceback" in err


# -- node ids of any length -----------------------------------------------------------------------------
def built_in_graph(tmp_path: Path, rename: dict[str, str] | None = None) -> Path:
    """examples/txt2img.json (built-in nodes only, so ComfyUI export works), ids renamed as asked."""
    data = json.loads((ROOT / "examples" / "txt2img.json").read_text())
    for old, new in (rename or {}).items():
        data["nodes"][new] = data["nodes"].pop(old)
        for link in data["links"]:
            for end in ("from", "to"):
                if link[end] == old:
                    link[end] = new
    path = tmp_path / "txt2img.json"
    path.write_text(json.dumps(data))
    return path


def test_a_node_id_of_5000_digits_runs_validates_and_round_trips_through_comfyui(tmp_path, capsys):
    long_id = "7" * 5000
    path = graph_with(tmp_path, "ngtest.Const", {"value": 5}, node_id=long_id)
    assert cli("validate", path) == 0
    assert cli("run", path, "--out", tmp_path / "out", "-q") == 0
    comfy = built_in_graph(tmp_path, {"3": long_id})  # the KSampler
    assert cli("export-comfy", comfy, "-o", tmp_path / "api.json") == 0
    assert long_id in json.loads((tmp_path / "api.json").read_text())
    assert cli("import-comfy", tmp_path / "api.json", "-o", tmp_path / "back.json") == 0
    assert long_id in json.loads((tmp_path / "back.json").read_text())["nodes"]
    assert "Traceback" not in capsys.readouterr().err


def test_fresh_ids_continue_after_the_numeric_ids_a_graph_can_count():
    g = Graph()
    g.add_node("x", id="9" * 5000)
    g.add_node("x", id="41")
    assert g.new_id() == "42"


# -- where results are written ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["import-comfy", "export-comfy"])
def test_writing_a_graph_onto_a_folder_says_so_and_exits_2(command, tmp_path, capsys):
    path = built_in_graph(tmp_path)
    (tmp_path / "folder").mkdir()
    assert cli(command, path, "-o", tmp_path / "folder") == 2
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'folder'}: it is a folder; give the path of a file" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["import-comfy", "export-comfy"])
def test_writing_into_a_read_only_folder_says_permission_denied_and_leaves_nothing(command, tmp_path):
    path = built_in_graph(tmp_path)
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        proc = unprivileged.run(command, str(path), "-o", str(folder / "out.json"), cwd=tmp_path)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot write {folder / 'out.json'}: permission denied" in proc.stderr
    assert "Traceback" not in proc.stderr and list(folder.iterdir()) == []


def test_a_full_disk_while_saving_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    path = save(Graph(), tmp_path / "g.json")
    before = path.read_text()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    g = Graph()
    g.add_node("ngtest.Const", id="1")
    with pytest.raises(WriteError) as info:
        save(g, path)
    assert str(info.value) == (f"cannot write {path}: no space left on the device; free some space or "
                               "choose a folder on another disk")
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["g.json"]


def test_a_batch_out_that_is_a_file_says_so_and_exits_2(tmp_path, capsys):
    path = graph_with(tmp_path, "ngtest.Const")
    (tmp_path / "taken").write_text("not a folder")
    assert cli("batch", path, "--out", tmp_path / "taken", "--sweep", "2.value=1:3", "--workers", "0") == 2
    err = capsys.readouterr().err
    assert f"cannot use the batch folder {tmp_path / 'taken'}: a file of that name is in the way" in err
    assert (tmp_path / "taken").read_text() == "not a folder" and "Traceback" not in err


# -- plugin folders ----------------------------------------------------------------------------------------
def test_an_unreadable_plugin_folder_is_listed_as_skipped_and_the_others_load(tmp_path):
    locked = tmp_path / "locked"
    (locked / "somepack").mkdir(parents=True)
    locked.chmod(0o000)
    try:
        env = {"NODEGRAPH_PLUGIN_PATH": os.pathsep.join([str(locked), str(PACKS)])}
        listing = unprivileged.run("plugins", "--json", env=env)
        run = unprivileged.run("run", str(graph_with(tmp_path, "ngtest.Const")), "--out",
                               str(tmp_path / "out"), "-q", env=env)
    finally:
        locked.chmod(0o755)
    assert listing.returncode == 0, listing.stderr
    packs = {p["source"]: p for p in json.loads(listing.stdout)}
    assert packs[str(locked)]["status"] == "skipped"
    assert packs[str(locked)]["error"].startswith("cannot read the plugin folder: permission denied")
    assert packs[str(PACKS / "ngtest")]["status"] == "loaded"
    assert run.returncode == 0, run.stderr
    assert f"warning: skipped {locked}: cannot read the plugin folder" in run.stderr


# -- text that is not text -----------------------------------------------------------------------------------
def test_a_lone_surrogate_in_a_string_param_is_refused_by_validation_naming_node_and_param(tmp_path, capsys):
    g = Graph()
    t = g.add_node("ngtest.Text", {"text": "a \ud800 b"}, id="4")
    g.connect(t, "text", g.add_node("ngtest.Sink", id="9"), "value")
    path = save(g, tmp_path / "g.json")
    assert cli("validate", path) == 2
    assert cli("run", path) == 2
    err = capsys.readouterr().err
    assert ("node 4 (ngtest.Text) param text: contains a lone surrogate (U+D800 at position 2)"
            in err) and "Traceback" not in err


# -- memory ---------------------------------------------------------------------------------------------------
def test_an_allocation_that_fails_is_not_enough_memory_naming_node_size_and_params(registry, tmp_path):
    from nodegraph.executor import Executor, OutputCache

    g = Graph()
    add = g.add_node("Add", id="3")
    g.connect(g.add_node("Const", {"value": 2}, id="1"), "value", add, "a")
    g.connect(g.add_node("Allocate", {"gigabytes": 275}, id="2"), "value", add, "b")
    g.connect(add, "sum", g.add_node("Sink", id="9"), "value")
    executor = Executor(registry, OutputCache())
    with pytest.raises(NodeExecutionError) as info:
        executor.run(g)
    err = info.value
    assert err.expected and err.node_id == "2"
    assert str(err).startswith("node 2 (Allocate) failed: not enough memory: the node needs 275.0 GB "
                               "more than it could get (its params: gigabytes=275)")
    assert "can't allocate memory" in err.traceback_text  # the original error stays for --verbose
    assert "1" in executor.run(g, outputs=["1"]).stats.cached  # earlier results are kept


# -- outputs a node could not fill ------------------------------------------------------------------------------
def test_an_empty_output_fails_only_the_node_that_needs_it_with_the_reason(registry):
    from nodegraph.executor import Executor, OutputCache

    g = Graph()
    p = g.add_node("Partial", {"why": "the checkpoint has no VAE weights"}, id="1")
    g.connect(p, "value", g.add_node("Sink", id="8"), "value")
    executor = Executor(registry, OutputCache())
    assert executor.run(g).ui["8"] == {"values": [1]}
    g.connect(p, "missing", g.add_node("Double", id="5"), "x")
    g.connect("5", "value", g.add_node("Sink", id="9"), "value")
    with pytest.raises(NodeExecutionError) as info:
        executor.run(g)
    assert str(info.value) == ("node 5 (Double) failed: input 'x' is empty: the checkpoint has no VAE "
                               "weights") and info.value.expected



def test_a_built_in_node_refusing_its_input_prints_its_message_without_a_traceback(tmp_path, capsys):
    """Built-in nodes check their inputs with InputError (a NodeError, and a ValueError as before)."""
    g = Graph()
    solid = g.add_node("SolidMask", {"value": 1.0, "width": 64, "height": 64}, id="1")
    crop = g.add_node("CropMask", {"x": 100, "y": 0, "width": 8, "height": 8}, id="2")
    g.connect(solid, "MASK", crop, "mask")
    g.connect(crop, "MASK", g.add_node("MaskPreview", id="3"), "mask")
    path = save(g, tmp_path / "crop.json")
    assert cli("run", path, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "node 2 (CropMask) failed: the crop starts at (100, 0), outside the 64×64 mask" in err
    assert "Traceback" not in err and "InputError" not in err
