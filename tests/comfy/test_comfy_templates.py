"""ComfyUI's own workflow templates (package ``comfyui-workflow-templates`` 0.2.11): every one imports with
nothing but placeholders to report, and the classic SD1.5/SDXL ones validate and run end to end on tiny
random models saved under the file names they ask for (at 64×64 and 1–2 steps)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from comfykit import templates_dir
from PIL import Image

from nodegraph.comfy.common import placeholder_counts
from nodegraph.comfy.ui_format import from_workflow
from nodegraph.errors import GraphLoadError
from nodegraph.format import dumps, loads
from nodegraph.validate import errors, validate

ALL = sorted(p.stem for p in templates_dir().glob("*.json") if not p.name.startswith("index"))

# Each classic template with the overrides that make it small (as `nodegraph run --set` takes them),
# and the size of the image each SaveImage node writes.
CLASSIC = {
    "default": (["5.width=64", "5.height=64", "3.steps=1"], {"9": (64, 64)}),
    "image2image": (["18.megapixels=0.01", "3.steps=2"], {"9": (96, 96)}),
    "hiresfix_latent_workflow": (["5.width=64", "5.height=64", "3.steps=1", "10.width=96", "10.height=96",
                                  "11.steps=2"], {"12": (96, 96)}),
    "hiresfix_esrgan_workflow": (["5.width=64", "5.height=64", "3.steps=1", "24.width=96", "24.height=96",
                                  "11.steps=2"], {"28": (64, 64), "12": (96, 96)}),
    "esrgan_example": (["5.width=64", "5.height=64", "3.steps=1"], {"9": (256, 256)}),
    "latent_upscale_different_prompt_model": (["5.width=64", "5.height=64", "3.steps=1", "32.steps=2"],
                                              {"10": (64, 64), "12": (96, 96)}),
    "lora": (["5.width=64", "5.height=64", "3.steps=1"], {"9": (64, 64)}),
    "lora_multiple": (["5.width=64", "5.height=64", "3.steps=1"], {"9": (64, 64)}),
    "sdxl_simple_example": (["5.width=64", "5.height=64", "10.steps=2", "10.end_at_step=1", "11.steps=2",
                             "11.start_at_step=1"], {"19": (64, 64)}),
    "sdxl_refiner_prompt_example": (["5.width=64", "5.height=64", "10.steps=2", "10.end_at_step=1",
                                     "11.steps=2", "11.start_at_step=1"], {"19": (64, 64)}),
    # four sky prompts stacked in areas down a tall image, then a hires pass
    "area_composition": (["5.width=64", "5.height=256", "3.steps=1", "22.width=64", "22.height=320", "24.steps=2"]
                         + [f"{n}.{k}={v}" for n, y in (("15", 0), ("11", 64), ("34", 128), ("18", 192))
                            for k, v in (("width", 64), ("height", 64), ("y", y))],
                         {"9": (64, 256), "32": (64, 320)}),
    "area_composition_square_area_for_subject": (["5.width=128", "5.height=128", "3.steps=1", "46.width=64",
                                                  "46.height=64", "46.y=64", "22.width=160", "22.height=160",
                                                  "24.steps=2"], {"9": (128, 128), "32": (160, 160)}),
    # SD2 inpainting checkpoint; the image scaled to 0.01 MP (102×102, cut to 96×96 for the VAE), its alpha the mask
    "inpaint_example": (["33.megapixels=0.01", "3.steps=2"], {"9": (96, 96)}),
    # 102×102 padded by 8, 8, 8, 16 (118×126) and cut to 112×120
    "inpaint_model_outpainting": (["38.megapixels=0.01", "30.left=8", "30.top=8", "30.right=8", "30.bottom=16",
                                   "3.steps=2"], {"9": (112, 120)}),
}


def load_template(name):
    return json.loads((templates_dir() / f"{name}.json").read_text(encoding="utf-8"))


def test_the_package_holds_the_classic_templates():
    assert set(CLASSIC) <= set(ALL) and len(ALL) > 150


@pytest.mark.parametrize("name", ALL)
def test_every_template_imports_and_reports_its_unknown_types(name, registry):
    try:
        graph, report = from_workflow(load_template(name), registry.nodes)
    except GraphLoadError:  # the one documented error; none of the templates needs it
        pytest.fail(f"{name} did not import")
    assert report.unknown == placeholder_counts(graph)
    assert loads(dumps(graph)) == graph
    problems = validate(graph, registry)
    summary = [p for p in problems if p.code == "comfyui_placeholders"]
    if report.unknown:
        assert len(summary) == 1
        for class_type, count in report.unknown.items():
            assert f"{class_type} ×{count}" in summary[0].message
        unknown_nodes = {p.node_id for p in problems if p.code == "unknown_type"}
        assert unknown_nodes == {n.id for n in graph.nodes.values()
                                 if n.type in report.unknown and n.mode != "muted"}
    else:
        assert summary == []


@pytest.mark.parametrize("name", list(CLASSIC))
def test_classic_templates_map_every_node(name, registry):
    graph, report = from_workflow(load_template(name), registry.nodes)
    assert not report.unknown


@pytest.mark.parametrize("name", list(CLASSIC))
def test_classic_templates_validate_and_run_end_to_end(name, session):
    graph, _ = from_workflow(load_template(name), session.registry.nodes)
    overrides, sizes = CLASSIC[name]
    for assignment in overrides:
        session.set(graph, assignment)
    assert errors(session.validate(graph)) == []
    result = session.run(graph)
    assert {node_id: len(ui["files"]) for node_id, ui in result.ui.items() if "files" in ui} == {
        node_id: 1 for node_id in sizes}
    for node_id, size in sizes.items():
        with Image.open(result.ui[node_id]["files"][0]) as img:
            assert img.size == size
            pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
        assert pixels.std() > 0  # an image, not a blank
