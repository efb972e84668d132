"""Each example graph, exported by ``nodegraph export-comfy``, queued over HTTP and followed over the
websocket, gives the PNG ``nodegraph run`` gives for the same graph (fetched through /view, compared
pixel for pixel), with live preview frames on the way; and a prompt naming a model or an image
outside the server's folders is refused."""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodegraph import RunOptions, api
from nodegraph.cli import main as nodegraph
from nodegraph.plugins import load_registry
from serverkit import ROOT, Client, run, start_server

EXAMPLES = ROOT / "examples"
UPSCALER = "compact-2x.safetensors"
TINY = {"4.ckpt_name": "sd1.safetensors", "5.width": "64", "5.height": "64", "3.steps": "2"}
CASES = {  # example -> --set overrides that make it tiny and quick (the demo runs as it ships)
    "demo": {"5.steps": "6"},
    "txt2img": TINY,
    "txt2img_split": {**{k: v for k, v in TINY.items() if k != "3.steps"}, "13.steps": "2"},
    "img2img": {"4.ckpt_name": "sd1.safetensors", "3.steps": "2", "10.image": "in.png"},
    "hiresfix": {**TINY, "11.steps": "2"},
    "upscale": {**TINY, "10.model_name": UPSCALER},
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A models root with a tiny random SD1 checkpoint and a small upscaler, in the real layouts."""
    from nodes.sd.testing import write_random_checkpoint, write_random_upscaler

    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints").mkdir()
    write_random_checkpoint(root / "checkpoints" / "sd1.safetensors", "sd1")
    (root / "upscale_models").mkdir()
    write_random_upscaler(root / "upscale_models" / UPSCALER)
    return root


@pytest.fixture(scope="module")
def builtin_server(tmp_path_factory, models):
    """A server with the built-in nodes, the tiny models, its own output cache; its input folder is
    LoadImage's first input folder (as ``nodegraph serve`` makes it)."""
    tmp = tmp_path_factory.mktemp("server")
    registry = load_registry(builtin=True, entry_points=False, folders=[], user=False)
    options = RunOptions(device="cpu", dtype="fp32", output_dir=tmp / "output", models_dirs=(models,))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NODEGRAPH_INPUT", str(tmp / "input"))
        running = start_server(tmp, registry, options=options)
        yield running
        running.thread.stop()


def prepare(name: str, folder: Path) -> Path:
    """The example with its overrides applied, saved as a graph file."""
    session = api.Session()
    graph = session.load(EXAMPLES / f"{name}.json")
    for key, value in CASES[name].items():
        session.set(graph, f"{key}={value}")
    return session.save(graph, folder / f"{name}.json")


def pixels(data: bytes | Path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data) if isinstance(data, bytes) else data).convert("RGB"))


def upload_input_image(srv) -> None:
    small = io.BytesIO()
    Image.open(EXAMPLES / "input" / "fox_sketch.png").convert("RGB").resize((64, 64)).save(small, "PNG")

    async def scenario():
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("image", small.getvalue(), filename="in.png", content_type="image/png")
        async with Client(srv.url) as c:
            return await c.post("/upload/image", data=form, params={"overwrite": "true"})

    status, reply = run(scenario())
    assert status == 200 and reply["name"] == "in.png", reply


def follow_prompt(srv, prompt: dict):
    async def scenario():
        async with Client(srv.url) as c:
            ws = await c.socket("examples")
            pid = await c.queue(prompt, "examples")
            seen = await ws.follow(pid)
            images = {}
            for data in seen.of("executed"):
                for record in data["output"].get("images", []):
                    status, body, _ = await c.get_bytes("/view", **record)
                    assert status == 200, record
                    images[(data["node"], record["type"])] = body
            return seen, images

    return run(scenario())


@pytest.mark.parametrize("name", list(CASES))
def test_an_exported_example_queued_over_http_gives_the_png_nodegraph_run_gives(
        name, builtin_server, models, tmp_path, monkeypatch):
    monkeypatch.setenv("NODEGRAPH_INPUT", str(builtin_server.engine.input_dir))
    if name == "img2img":
        upload_input_image(builtin_server)
    graph_file = prepare(name, tmp_path)
    assert nodegraph(["export-comfy", str(graph_file), "-o", str(tmp_path / "api.json")]) == 0
    assert nodegraph(["run", str(graph_file), "--out", str(tmp_path / "ref"), "--models", str(models),
                      "--device", "cpu", "--dtype", "fp32", "--quiet"]) == 0
    (reference,) = sorted((tmp_path / "ref").rglob("*.png"))

    seen, images = follow_prompt(builtin_server, json.loads((tmp_path / "api.json").read_text()))
    assert seen.of("execution_success"), seen.messages
    saved = [body for (node, kind), body in images.items() if kind == "output"]
    assert len(saved) == 1
    np.testing.assert_array_equal(pixels(saved[0]), pixels(reference))
    assert pixels(saved[0]).shape[:2] == Image.open(reference).size[::-1]


def test_the_sampler_sends_live_previews_in_comfyuis_binary_layout(builtin_server, tmp_path, monkeypatch):
    monkeypatch.setenv("NODEGRAPH_INPUT", str(builtin_server.engine.input_dir))
    graph_file = prepare("txt2img", tmp_path)
    assert nodegraph(["export-comfy", str(graph_file), "-o", str(tmp_path / "api.json")]) == 0
    prompt = json.loads((tmp_path / "api.json").read_text())
    prompt["3"]["inputs"]["seed"] = 4321  # not cached from another test
    seen, _ = follow_prompt(builtin_server, prompt)
    assert len(seen.frames) == len(seen.of("progress")) == 2
    event, image_type = struct.unpack(">II", seen.frames[0][:8])
    assert (event, image_type) == (1, 1)  # PREVIEW_IMAGE, JPEG
    preview = Image.open(io.BytesIO(seen.frames[0][8:]))
    assert (preview.format, preview.size) == ("JPEG", (8, 8))  # one pixel per latent pixel


def test_a_preview_image_is_served_from_the_temporary_folder(builtin_server, tmp_path, monkeypatch):
    monkeypatch.setenv("NODEGRAPH_INPUT", str(builtin_server.engine.input_dir))
    graph_file = prepare("upscale", tmp_path)
    assert nodegraph(["export-comfy", str(graph_file), "-o", str(tmp_path / "api.json")]) == 0
    prompt = json.loads((tmp_path / "api.json").read_text())
    prompt["3"]["inputs"]["seed"] = 99
    _, images = follow_prompt(builtin_server, prompt)
    assert set(images) == {("9", "temp"), ("12", "output")}
    assert pixels(images[("9", "temp")]).shape == (64, 64, 3)


def test_object_info_has_the_built_in_nodes_but_not_the_notes(builtin_server):
    async def scenario():
        async with Client(builtin_server.url) as c:
            return await c.get("/object_info")

    status, info = run(scenario())
    assert status == 200
    assert {"CheckpointLoaderSimple", "KSampler", "SaveImage", "LoadImage"} <= set(info)
    assert "Note" not in info and "MarkdownNote" not in info  # frontend-only nodes in ComfyUI
    assert "sd1.safetensors" in info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]


def refusal(srv, prompt):
    async def scenario():
        async with Client(srv.url) as c:
            return await c.post("/prompt", {"prompt": prompt})

    status, reply = run(scenario())
    assert status == 400, reply
    return reply


@pytest.mark.parametrize("ckpt", ["../checkpoints/sd1.safetensors", "{models}/checkpoints/sd1.safetensors",
                                  "..\\..\\etc\\passwd", "/etc/passwd"])
def test_a_prompt_naming_a_model_outside_the_models_roots_is_refused(builtin_server, models, ckpt):
    prompt = json.loads(json.dumps(_loader_prompt(ckpt.format(models=models))))
    reply = refusal(builtin_server, prompt)
    (error,) = reply["node_errors"]["4"]["errors"]
    assert error["type"] == "value_not_in_list"
    assert error["extra_info"]["input_name"] == "ckpt_name"


def test_a_prompt_naming_an_image_outside_the_input_folders_is_refused(builtin_server):
    prompt = {"10": {"class_type": "LoadImage", "inputs": {"image": str(EXAMPLES / "input" / "fox_sketch.png")}},
              "11": {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}}}
    (error,) = refusal(builtin_server, prompt)["node_errors"]["10"]["errors"]
    assert error["type"] == "value_not_in_list" and "server lists" in error["details"]


def test_a_model_name_with_windows_separators_finds_the_listed_file(builtin_server, models, tmp_path):
    from nodegraph.server.prompts import check_prompt

    (models / "checkpoints" / "sub").mkdir(exist_ok=True)
    (models / "checkpoints" / "sub" / "other.safetensors").write_bytes(b"")
    checked = check_prompt(_loader_prompt("sub\\other.safetensors"), builtin_server.engine.registry,
                           builtin_server.engine.options)
    assert checked.graph.nodes["4"].params["ckpt_name"] == "sub/other.safetensors"


def _loader_prompt(ckpt: str) -> dict:
    return {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["4", 2]}},
            "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}}
