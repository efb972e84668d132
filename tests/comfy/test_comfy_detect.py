"""Opening any file: our graph files, ComfyUI workflows and prompts as JSON, PNG and WebP images carrying
them (with ComfyUI's chunk names); the API and the CLI's run use the same entry point."""
from __future__ import annotations

import json

import pytest
from comfykit import fixture, template
from PIL import Image, PngImagePlugin

from nodegraph import GraphLoadError
from nodegraph.api import Session
from nodegraph.opening import NODEGRAPH, PROMPT, WORKFLOW, detect, open_graph
from nodegraph.format import dumps, loads

PROMPT_DATA = fixture("comfyui_basic_api_example.json")


def png(path, **chunks):
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value if isinstance(value, str) else json.dumps(value))
    Image.new("RGB", (8, 8), "navy").save(path, pnginfo=info)
    return path


def test_detect_tells_the_formats_apart():
    assert detect(template("default")) == WORKFLOW
    assert detect(PROMPT_DATA) == PROMPT
    assert detect({"prompt": PROMPT_DATA}) == PROMPT
    assert detect({"format": "nodegraph", "version": 1, "nodes": {}}) == NODEGRAPH
    assert detect({"hello": 1}) is None and detect([]) is None


def test_a_workflow_and_a_prompt_open_from_json_files(tmp_path, specs):
    (tmp_path / "wf.json").write_text(json.dumps(template("default")))
    (tmp_path / "api.json").write_text(json.dumps(PROMPT_DATA))
    wf = open_graph(tmp_path / "wf.json", specs)
    api = open_graph(tmp_path / "api.json", specs)
    assert (wf.kind, api.kind) == (WORKFLOW, PROMPT)
    assert wf.graph.nodes["3"].params["seed"] == 685468484323813
    assert api.graph.nodes["3"].params["seed"] == 8566257
    assert not wf.image and wf.is_comfyui


def test_our_own_file_opens_as_it_is(tmp_path, specs):
    graph = open_graph(png(tmp_path / "x.png", prompt=PROMPT_DATA), specs).graph
    (tmp_path / "g.json").write_text(dumps(graph))
    opened = open_graph(tmp_path / "g.json", specs)
    assert opened.kind == NODEGRAPH and opened.graph == loads(dumps(graph)) and opened.report is None


def test_a_comfyui_png_opens_from_its_workflow_chunk_first(tmp_path, specs):
    opened = open_graph(png(tmp_path / "c.png", prompt=PROMPT_DATA, workflow=template("default")), specs)
    assert opened.kind == WORKFLOW and opened.image
    assert opened.graph.nodes["9"].params["filename_prefix"] == "SD1.5"  # the workflow's, not the prompt's


def test_a_png_with_only_a_prompt_chunk_opens_from_it(tmp_path, specs):
    opened = open_graph(png(tmp_path / "c.png", prompt=PROMPT_DATA), specs)
    assert opened.kind == PROMPT and opened.graph.nodes["6"].params["text"] == "masterpiece best quality girl"


def test_a_png_with_our_chunk_opens_our_graph_even_with_comfyui_chunks(tmp_path, specs):
    ours = open_graph(png(tmp_path / "a.png", prompt=PROMPT_DATA), specs).graph
    ours.nodes["6"].params["text"] = "ours"
    path = png(tmp_path / "b.png", nodegraph=dumps(ours), prompt=PROMPT_DATA, workflow=template("default"))
    opened = open_graph(path, specs)
    assert opened.kind == NODEGRAPH and opened.graph.nodes["6"].params["text"] == "ours"


def test_a_comfyui_webp_opens_from_its_exif(tmp_path, specs):
    image = Image.new("RGB", (8, 8), "teal")
    exif = image.getexif()
    exif[0x0110] = "prompt:" + json.dumps(PROMPT_DATA)
    exif[0x010F] = "workflow:" + json.dumps(template("default"))
    image.save(tmp_path / "c.webp", format="WEBP", exif=exif, lossless=True)
    opened = open_graph(tmp_path / "c.webp", specs)
    assert opened.kind == WORKFLOW and opened.image and len(opened.graph) == 11


@pytest.mark.parametrize("make, code", [
    (lambda p: png(p / "plain.png"), "no_graph"),
    (lambda p: (p / "x.json").write_text("{nope") and p / "x.json", "not_json"),
    (lambda p: (p / "x.json").write_text('{"hello": 1}') and p / "x.json", "bad_format"),
    (lambda p: p / "absent.json", "not_found"),
])
def test_what_cannot_be_opened_is_a_load_error_with_a_code(tmp_path, specs, make, code):
    with pytest.raises(GraphLoadError) as exc:
        open_graph(make(tmp_path), specs)
    assert [p.code for p in exc.value.problems] == [code]


def test_the_api_loads_comfyui_files(tmp_path, registry):
    path = png(tmp_path / "c.png", workflow=template("sdxl_simple_example"))
    graph = Session(registry).load(path)
    assert graph.nodes["10"].params["steps"] == 25
