"""Bad input gives a clear error naming the node, and nothing is written outside the output folder:
a missing checkpoint, a corrupt image, a filename prefix that would escape, images of the wrong kind, an
empty batch, a size that is not a multiple of 8."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nodekit import ROOT, run_cli

from nodegraph import GraphValidationError, NodeExecutionError, NodeSpec, OutputSpec, node
from nodegraph.api import Session
from nodegraph.executor import OutputCache
from nodegraph.plugins import load_registry

EXAMPLE = str(ROOT / "examples" / "txt2img.json")


def files_under(folder) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}


# -- missing checkpoint ---------------------------------------------------------------------------------
def test_a_missing_checkpoint_is_a_validation_error_listing_folders_and_files(session):
    graph = session.load(EXAMPLE)
    session.set(graph, "4.ckpt_name=v1-5-pruned-emaonly.safetensors")
    problems = [p for p in session.validate(graph) if p.severity == "error"]
    assert len(problems) == 1
    (problem,) = problems
    assert (problem.node_id, problem.node_type, problem.field) == ("4", "CheckpointLoaderSimple", "param ckpt_name")
    text = str(problem)
    assert "'v1-5-pruned-emaonly.safetensors' was not found" in text
    assert str(session.options.models_dirs[0] / "checkpoints") in text
    assert "sd1.safetensors" in text and "sdxl.safetensors" in text


def test_a_missing_checkpoint_fails_the_loader_with_the_same_explanation_when_not_validated(session):
    graph = session.load(EXAMPLE)
    session.set(graph, "4.ckpt_name=gone.safetensors")
    with pytest.raises(NodeExecutionError) as info:
        session.run(graph, validate=False)
    assert info.value.node_id == "4" and info.value.node_type == "CheckpointLoaderSimple"
    assert "Folders searched" in str(info.value) and "sd2.safetensors" in str(info.value)


def test_a_missing_checkpoint_through_the_cli_exits_2_and_names_the_node(models_dir, tmp_path):
    proc = run_cli("run", EXAMPLE, "--models", str(models_dir), "--out", str(tmp_path / "out"),
                   "--set", "4.ckpt_name=nope.safetensors", cwd=tmp_path)
    assert proc.returncode == 2
    assert "node 4 (CheckpointLoaderSimple) param ckpt_name" in proc.stderr
    assert str(models_dir / "checkpoints") in proc.stderr and "sd1.safetensors" in proc.stderr
    assert files_under(tmp_path) == set()


# -- images ---------------------------------------------------------------------------------------------
def image_graph(session, image: str, prefix: str = "out"):
    graph = session.new_graph()
    graph.add_node("LoadImage", {"image": image}, id="1")
    graph.add_node("SaveImage", {"filename_prefix": prefix}, id="2")
    graph.connect("1", "IMAGE", "2", "images")
    return graph


def test_a_corrupt_image_fails_load_image_with_the_file_named(session, tmp_path):
    bad = tmp_path / "broken.png"
    good = (ROOT / "examples" / "input" / "fox_sketch.png").read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(NodeExecutionError) as info:
        session.run(image_graph(session, str(bad)))
    assert (info.value.node_id, info.value.node_type) == ("1", "LoadImage")
    assert str(bad) in str(info.value) and "corrupt or truncated" in str(info.value)
    assert not session.options.output_dir.exists()


def test_a_file_that_is_not_an_image_is_named_as_such(session, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    with pytest.raises(NodeExecutionError, match="not an image file"):
        session.run(image_graph(session, str(bad)))


def test_a_missing_image_is_a_validation_error_listing_the_input_folders(session):
    with pytest.raises(GraphValidationError) as info:
        session.run(image_graph(session, "nowhere.png"))
    (problem,) = info.value.problems
    assert problem.node_id == "1" and "Input folders searched" in problem.message


@pytest.mark.parametrize("prefix", ["../escape", "a/../../escape", "/tmp/escape", "C:escape", "~/escape"])
def test_a_prefix_that_would_leave_the_output_folder_is_refused(session, tmp_path, prefix):
    before = files_under(tmp_path)
    with pytest.raises(NodeExecutionError) as info:
        session.run(image_graph(session, "fox_sketch.png", prefix))
    assert (info.value.node_id, info.value.node_type) == ("2", "SaveImage")
    assert "filename_prefix" in str(info.value)
    assert all(p.parts[0] == "out" for p in files_under(tmp_path) - before)
    for folder in (tmp_path.parent, Path("/tmp"), Path.home()):
        assert not list(folder.glob("**/escape_*.png" if folder == tmp_path.parent else "escape_*.png"))


def test_a_prefix_escaping_through_the_cli_exits_1_and_writes_nothing(models_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = run_cli("run", EXAMPLE, "--models", str(models_dir), "--out", str(work / "out"), "--dtype", "fp32",
                   "--set", "4.ckpt_name=sd1.safetensors", "--set", "5.width=64", "--set", "5.height=64",
                   "--set", "3.steps=1", "--set", "9.filename_prefix=../../escaped", cwd=work)
    assert proc.returncode == 1
    assert "node 9 (SaveImage) failed" in proc.stderr and "'..'" in proc.stderr
    assert not list(tmp_path.rglob("*.png"))


# -- images of the wrong kind, empty batches, sizes ---------------------------------------------------
def make_image(channels: int, batch: int = 1):
    @node("testpack.MakeImage", outputs=[OutputSpec("IMAGE", "IMAGE")])
    def make() -> torch.Tensor:
        return torch.rand(batch, 64, 64, channels)

    return make


def session_with(spec: NodeSpec, models_dir, out_dir) -> Session:
    registry = load_registry(builtin=True, entry_points=False, folders=[], user=False)
    registry.add_node(spec, "testpack")
    from nodegraph import RunOptions

    return Session(registry, options=RunOptions("cpu", "fp32", out_dir, (models_dir,)), cache=OutputCache())


def test_an_image_with_two_channels_fails_vae_encode_naming_the_channels(models_dir, out_dir):
    session = session_with(make_image(channels=2), models_dir, out_dir)
    graph = session.new_graph()
    graph.add_node("testpack.MakeImage", {}, id="1")
    graph.add_node("CheckpointLoaderSimple", {"ckpt_name": "sd1.safetensors"}, id="2")
    graph.add_node("VAEEncode", {}, id="3")
    graph.add_node("VAEDecode", {}, id="4")
    graph.add_node("SaveImage", {}, id="5")
    graph.connect("1", "IMAGE", "3", "pixels")
    graph.connect("2", "VAE", "3", "vae")
    graph.connect("3", "LATENT", "4", "samples")
    graph.connect("2", "VAE", "4", "vae")
    graph.connect("4", "IMAGE", "5", "images")
    with pytest.raises(NodeExecutionError) as info:
        session.run(graph)
    assert (info.value.node_id, info.value.node_type) == ("3", "VAEEncode")
    assert "2 channels" in str(info.value) and "RGB" in str(info.value)


def test_saving_an_image_with_two_channels_fails_naming_the_channels(models_dir, out_dir):
    session = session_with(make_image(channels=2), models_dir, out_dir)
    graph = session.new_graph()
    graph.add_node("testpack.MakeImage", {}, id="1")
    graph.add_node("SaveImage", {}, id="2")
    graph.connect("1", "IMAGE", "2", "images")
    with pytest.raises(NodeExecutionError) as info:
        session.run(graph)
    assert info.value.node_type == "SaveImage" and "2 channels" in str(info.value)
    assert not list(out_dir.rglob("*.png"))


def test_saving_an_empty_batch_fails_naming_the_node(models_dir, out_dir):
    session = session_with(make_image(channels=3, batch=0), models_dir, out_dir)
    graph = session.new_graph()
    graph.add_node("testpack.MakeImage", {}, id="1")
    graph.add_node("PreviewImage", {}, id="2")
    graph.connect("1", "IMAGE", "2", "images")
    with pytest.raises(NodeExecutionError) as info:
        session.run(graph)
    assert info.value.node_type == "PreviewImage" and "empty batch" in str(info.value)


def test_a_batch_of_0_is_a_validation_error_on_the_empty_latent(session):
    graph = session.load(EXAMPLE)
    session.set(graph, "4.ckpt_name=sd1.safetensors")
    session.set(graph, "5.batch_size=0")
    with pytest.raises(GraphValidationError) as info:
        session.run(graph)
    (problem,) = info.value.problems
    assert (problem.node_id, problem.field) == ("5", "param batch_size")
    assert "below the minimum 1" in problem.message


def test_a_width_that_is_not_a_multiple_of_8_is_a_validation_error_before_anything_runs(session):
    graph = session.load(EXAMPLE)
    for assignment in ("4.ckpt_name=sd1.safetensors", "5.width=100", "5.height=64"):
        session.set(graph, assignment)
    with pytest.raises(GraphValidationError) as info:
        session.run(graph)
    (problem,) = info.value.problems
    assert (problem.node_id, problem.field, problem.code) == ("5", "param width", "not_multiple")
    assert problem.message.endswith("100 is not a multiple of 8; use 96 or 104")
    assert not session.options.output_dir.exists()
