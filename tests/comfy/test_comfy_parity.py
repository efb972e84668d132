"""The same workflow given as UI JSON, as API JSON, and as PNGs carrying either chunk (ComfyUI's chunk
names) runs to the same pixels — through the API and through ``nodegraph run``."""
from __future__ import annotations

import json

import numpy as np
import pytest
from comfykit import template
from comfyrules import to_prompt
from PIL import Image, PngImagePlugin

from nodegraph import RunOptions
from nodegraph.api import Session
from nodegraph.cli import main
from nodegraph.executor import OutputCache

CASES = {
    "default": ["5.width=64", "5.height=64", "3.steps=2"],
    "latent_upscale_different_prompt_model": ["5.width=64", "5.height=64", "3.steps=1", "32.steps=2"],
}


def variants(name, folder):
    """The workflow as four files: UI JSON, API JSON, PNG with a workflow chunk, PNG with a prompt chunk."""
    workflow, prompt = template(name), to_prompt(template(name))
    (folder / "ui.json").write_text(json.dumps(workflow))
    (folder / "api.json").write_text(json.dumps(prompt))
    for key, data in (("workflow", workflow), ("prompt", prompt)):
        info = PngImagePlugin.PngInfo()
        info.add_text(key, json.dumps(data))
        Image.new("RGB", (4, 4)).save(folder / f"{key}.png", pnginfo=info)
    return ["ui.json", "api.json", "workflow.png", "prompt.png"]


def fresh_session(registry, models_dir, out_dir):
    """An fp32 CPU session with its own output cache (so nothing is reused between runs)."""
    options = RunOptions(device="cpu", dtype="fp32", output_dir=out_dir, models_dirs=(models_dir,))
    return Session(registry, options=options, cache=OutputCache())


def run_file(session, path, assignments):
    graph = session.load(path)
    for assignment in assignments:
        session.set(graph, assignment)
    result = session.run(graph)
    return pixels(f for ui in result.ui.values() for f in ui.get("files", []))


def pixels(paths):
    out = []
    for path in sorted(paths):
        with Image.open(path) as img:
            out.append(np.asarray(img.convert("RGB")))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_ui_api_and_png_forms_give_identical_pixels(name, registry, models_dir, tmp_path):
    results = {}
    for file in variants(name, tmp_path):
        session = fresh_session(registry, models_dir, tmp_path / f"out-{file}")
        results[file] = run_file(session, tmp_path / file, CASES[name])
    reference = results.pop("ui.json")
    assert reference and all(img.std() > 0 for img in reference)
    for file, images in results.items():
        assert len(images) == len(reference), file
        for ours, ref in zip(images, reference):
            np.testing.assert_array_equal(ours, ref, err_msg=file)


def test_nodegraph_run_runs_a_comfyui_png_like_the_api(registry, models_dir, tmp_path, capsys):
    variants("default", tmp_path)
    sets = [a for s in CASES["default"] for a in ("--set", s)]
    code = main(["run", str(tmp_path / "workflow.png"), "--out", str(tmp_path / "cli"),
                 "--models", str(models_dir), "--device", "cpu", "--dtype", "fp32", "-q", *sets])
    assert code == 0, capsys.readouterr().err
    (cli_image,) = pixels((tmp_path / "cli").glob("*.png"))
    (api_image,) = run_file(fresh_session(registry, models_dir, tmp_path / "api"), tmp_path / "ui.json",
                            CASES["default"])
    np.testing.assert_array_equal(cli_image, api_image)


def test_the_seed_matters_so_equal_pixels_mean_something(registry, models_dir, tmp_path):
    variants("default", tmp_path)
    images = []
    for seed in (1, 2):
        session = fresh_session(registry, models_dir, tmp_path / str(seed))
        images += run_file(session, tmp_path / "ui.json", CASES["default"] + [f"3.seed={seed}"])
    assert np.abs(images[0].astype(int) - images[1].astype(int)).mean() > 1
