"""ComfyUI's ControlNet templates (comfyui-workflow-templates 0.2.11) import with no placeholder and run
end to end on tiny random SD1 checkpoints and ControlNets saved under the names they ask for.

Preprocessors aside: controlnet_example runs its hint image through a Canny node, which NodeGraph does
not have yet (it comes with the masks work). That template's run test connects the Canny node's
input image straight to what Canny fed; every other node runs as the template has it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from comfykit import templates_dir
from PIL import Image

from nodegraph import RunOptions
from nodegraph.api import Session
from nodegraph.comfy.ui_format import from_workflow
from nodegraph.executor import OutputCache
from nodegraph.validate import errors

# template → (checkpoints it loads, ControlNets it loads, images it loads, overrides that make it small,
# SaveImage node → size)
TEMPLATES = {
    "controlnet_example": (["DreamShaper_8_pruned.safetensors"], ["control_v11p_sd15_scribble_fp16.safetensors"],
                           ["controlnet_example_input_image.png"], ["5.width=64", "5.height=64", "3.steps=1"],
                           {"9": (64, 64)}),
    "2_pass_pose_worship": (["majicmixRealistic_v7.safetensors", "japaneseStyleRealistic_v20.safetensors"],
                            ["control_v11p_sd15_openpose_fp16.safetensors"], ["2_pass_pose_worship_input.png"],
                            ["5.width=64", "5.height=64", "50.steps=1", "14.width=96", "14.height=96", "58.steps=2"],
                            {"51": (96, 96)}),
    "mixing_controlnets": (["awpainting_v14.safetensors"], ["control_v11p_sd15_scribble_fp16.safetensors",
                                                            "control_v11p_sd15_openpose_fp16.safetensors"],
                           ["mixing_controlnets_scribble_input.png", "mixing_controlnets_pose_input.png"],
                           ["5.width=64", "5.height=64", "3.steps=1"], {"9": (64, 64)}),
    "depth_controlnet": (["architecturerealmix_v11.safetensors"], ["control_v11f1p_sd15_depth_fp16.safetensors"],
                         ["depth_controlnet_input_image.png"], ["5.width=64", "5.height=64", "3.steps=1"],
                         {"9": (64, 64)}),
}
PREPROCESSORS = {"Canny"}


def load_template(name):
    return json.loads((templates_dir() / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def control_models(tmp_path_factory):
    from nodes.sd.control.testing import write_random_controlnet
    from nodes.sd.testing import write_random_checkpoint

    root = tmp_path_factory.mktemp("cn-models")
    (root / "checkpoints").mkdir()
    (root / "controlnet").mkdir()
    (root / "vae").mkdir()
    for i, (ckpts, nets, _, _, _) in enumerate(TEMPLATES.values()):
        for j, name in enumerate(ckpts):
            write_random_checkpoint(root / "checkpoints" / name, "sd1", seed=10 * i + j)
        for j, name in enumerate(nets):
            write_random_controlnet(root / "controlnet" / name, "sd1", seed=10 * i + j, prefix="control_model.")
    from nodes.sd.testing import write_random_vae

    write_random_vae(root / "vae" / "vae-ft-mse-840000-ema-pruned.safetensors")
    inputs = tmp_path_factory.mktemp("cn-input")
    for i, (_, _, images, _, _) in enumerate(TEMPLATES.values()):
        for j, name in enumerate(images):
            pixels = np.random.RandomState(10 * i + j).randint(0, 256, size=(48, 80, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(inputs / name)
    return root, inputs


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_controlnet_templates_import_with_no_placeholder_but_preprocessors(name, registry):
    graph, report = from_workflow(load_template(name), registry.nodes)
    assert set(report.unknown) <= PREPROCESSORS
    assert {n.type for n in graph.nodes.values()} >= {"ControlNetLoader", "ControlNetApplyAdvanced"}


def bypass_preprocessors(graph) -> None:
    """Feed what each preprocessor fed straight from the preprocessor's own image input."""
    for node in [n for n in graph.nodes.values() if n.type in PREPROCESSORS or n.type.endswith(tuple(PREPROCESSORS))]:
        source = graph.link_into(node.id, "image")
        for link in graph.links_from(node.id):
            graph.disconnect(link.dst, link.input)
            graph.connect(source.src, source.output, link.dst, link.input)
        graph.remove_node(node.id)


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_controlnet_templates_run_end_to_end(name, registry, control_models, tmp_path, monkeypatch):
    models, inputs = control_models
    monkeypatch.setenv("NODEGRAPH_INPUT", str(inputs))
    session = Session(registry, options=RunOptions(device="cpu", dtype="fp32", output_dir=tmp_path / "out",
                                                   models_dirs=(models,)), cache=OutputCache())
    graph, _ = from_workflow(load_template(name), registry.nodes)
    bypass_preprocessors(graph)
    _, _, _, overrides, sizes = TEMPLATES[name]
    for assignment in overrides:
        session.set(graph, assignment)
    assert errors(session.validate(graph)) == []
    result = session.run(graph)
    for node_id, size in sizes.items():
        with Image.open(result.ui[node_id]["files"][0]) as img:
            assert img.size == size
            assert np.asarray(img.convert("RGB"), dtype=np.float32).std() > 0
    loaded = [ui["control_net"]["kind"] for ui in result.ui.values() if "control_net" in ui]
    assert loaded and set(loaded) == {"ControlNet"}
