"""``nodegraph import-comfy`` and ``nodegraph export-comfy``; placeholders load, validate and save but
never run."""
from __future__ import annotations

import json

import pytest
from comfykit import fixture, strip_meta, template

from nodegraph import GraphValidationError
from nodegraph.cli import main
from nodegraph.comfy.export import UnmappedNodesError, export_prompt
from nodegraph.comfy.ui_format import from_workflow
from nodegraph.format import load


def write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_import_comfy_writes_a_graph_file(tmp_path, capsys):
    src = write(tmp_path / "wf.json", template("sdxl_simple_example"))
    assert main(["import-comfy", str(src), "-o", str(tmp_path / "g.json")]) == 0
    graph = load(tmp_path / "g.json")
    assert graph.nodes["10"].params["steps"] == 25
    out = capsys.readouterr()
    assert "wrote" in out.out and "PrimitiveNode(s) were written into the params" in out.err


def test_import_comfy_lists_unknown_types_with_their_counts(tmp_path, capsys):
    src = write(tmp_path / "wf.json", template("gligen_textbox_example"))
    assert main(["import-comfy", str(src), "-o", str(tmp_path / "g.json")]) == 0
    err = capsys.readouterr().err
    assert "3 node(s) of ComfyUI types NodeGraph does not have" in err
    assert "GLIGENLoader ×1, GLIGENTextBoxApply ×2" in err


def test_import_comfy_refuses_what_it_cannot_read(tmp_path, capsys):
    src = write(tmp_path / "x.json", {"nodes": [{"id": 1}], "links": []})
    assert main(["import-comfy", str(src), "-o", str(tmp_path / "g.json")]) == 2
    assert "nodes[0] is not a ComfyUI node" in capsys.readouterr().err
    assert not (tmp_path / "g.json").exists()


def test_export_comfy_writes_the_api_prompt(tmp_path):
    src = write(tmp_path / "api.json", fixture("comfyui_basic_api_example.json"))
    assert main(["import-comfy", str(src), "-o", str(tmp_path / "g.json")]) == 0
    assert main(["export-comfy", str(tmp_path / "g.json"), "-o", str(tmp_path / "out.json")]) == 0
    written = json.loads((tmp_path / "out.json").read_text())
    assert strip_meta(written) == fixture("comfyui_basic_api_example.json")


def test_export_comfy_names_the_nodes_that_cannot_go(tmp_path, capsys):
    src = write(tmp_path / "wf.json", template("gligen_textbox_example"))
    assert main(["export-comfy", str(src), "-o", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert "node 10 (GLIGENLoader): a placeholder" in err
    assert "node 3 (KSampler): a required input is not connected, or comes" in err
    assert not (tmp_path / "out.json").exists()


def test_a_node_of_another_pack_cannot_be_exported(specs):
    graph, _ = from_workflow(template("default"), specs)
    graph.add_node("example_pack.Thing", {}, id="50")
    with pytest.raises(UnmappedNodesError, match="node 50 .*node pack 'example_pack'"):
        export_prompt(graph, specs)


def test_notes_and_muted_nodes_are_left_out_without_complaint(specs):
    graph, _ = from_workflow(template("hiresfix_latent_workflow"), specs)
    graph.set_mode("18", "muted")
    prompt = export_prompt(graph, specs)
    assert "18" not in prompt and not any(e["class_type"].endswith("Note") for e in prompt.values())


def test_a_placeholder_loads_validates_and_saves_but_never_runs(session, tmp_path):
    graph, _ = from_workflow(template("gligen_textbox_example"), session.registry.nodes)
    problems = session.validate(graph)
    loader = next(p for p in problems if p.node_id == "10")
    assert loader.code == "unknown_type"
    assert "ComfyUI node type 'GLIGENLoader' has no NodeGraph equivalent" in loader.message
    session.save(graph, tmp_path / "g.json")
    assert session.load(tmp_path / "g.json") == graph
    with pytest.raises(GraphValidationError, match="node 10 \\(GLIGENLoader\\)"):
        session.run(graph)


def test_the_executor_alone_refuses_a_placeholder_too(session):
    graph, _ = from_workflow(template("gligen_textbox_example"), session.registry.nodes)
    with pytest.raises(GraphValidationError, match="GLIGENTextBoxApply"):
        session.run(graph, validate=False)


def test_validate_command_lists_placeholders(tmp_path, capsys):
    src = write(tmp_path / "wf.json", template("gligen_textbox_example"))
    assert main(["validate", str(src)]) == 2
    err = capsys.readouterr().err
    assert "3 placeholder node(s) for ComfyUI types NodeGraph does not have" in err


def test_import_comfy_reads_a_comfyui_png(tmp_path):
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(fixture("comfyui_basic_api_example.json")))
    info.add_text("workflow", json.dumps(template("default")))
    Image.new("RGB", (8, 8)).save(tmp_path / "ComfyUI_00001_.png", pnginfo=info)
    assert main(["import-comfy", str(tmp_path / "ComfyUI_00001_.png"), "-o", str(tmp_path / "g.json")]) == 0
    graph = load(tmp_path / "g.json")
    assert graph.nodes["9"].params == {"filename_prefix": "SD1.5"} and graph.groups  # from the workflow
