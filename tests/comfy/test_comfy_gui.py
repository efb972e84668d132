"""The editor opens ComfyUI files through the same entry point (offscreen; document level)."""
from __future__ import annotations

import json

import pytest
from comfykit import template

pytest.importorskip("PySide6")


def test_the_editor_document_opens_a_comfyui_workflow_as_an_untitled_graph(qapp, registry, tmp_path):
    from gui.document import Document

    path = tmp_path / "controlnet.json"
    path.write_text(json.dumps(template("gligen_textbox_example")))
    doc = Document(registry)
    opened = doc.open(path)
    assert doc.graph.nodes["3"].type == "KSampler" and doc.graph is opened.graph
    assert doc.path is None  # saving must not overwrite the ComfyUI file: Save asks for a name
    assert opened.report.unknown == {"GLIGENLoader": 1, "GLIGENTextBoxApply": 2}


def test_the_editor_document_keeps_the_path_of_our_own_files(qapp, registry, tmp_path):
    from gui.document import Document
    from nodegraph.comfy.ui_format import from_workflow
    from nodegraph.format import save

    graph, _ = from_workflow(template("default"), registry.nodes)
    save(graph, tmp_path / "g.json")
    doc = Document(registry)
    doc.open(tmp_path / "g.json")
    assert doc.path == tmp_path / "g.json" and doc.graph == graph
