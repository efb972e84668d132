"""The example graphs end to end on tiny random SD1/SD2/SDXL checkpoints, through the CLI and the API:
the PNG exists with the right size, carries the graph that made it, and the KSampler and split-node
variants of txt2img give identical pixels."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from nodekit import ROOT, UPSCALE_MODEL, run_cli
from PIL import Image

from nodegraph import api
from nodegraph.format import load
from nodes.imageio import read_graph_from_png

EXAMPLES = ROOT / "examples"
SIZE = ("--set", "5.width=64", "--set", "5.height=64")
FAST = {  # per example: --set overrides that make it tiny and quick, and the expected image size
    "txt2img": (SIZE + ("--set", "3.steps=2"), (64, 64)),
    "txt2img_split": (SIZE + ("--set", "13.steps=2"), (64, 64)),
    "img2img": (("--set", "3.steps=2"), (64, 64)),  # + the input image, set per test
    "hiresfix": (SIZE + ("--set", "3.steps=2", "--set", "11.steps=2"), (96, 96)),
    "upscale": (SIZE + ("--set", "3.steps=2", "--set", f"10.model_name={UPSCALE_MODEL}"), (128, 128)),
}


def overrides(name: str, family: str, input_image: Path) -> list[str]:
    sets = list(FAST[name][0]) + ["--set", f"4.ckpt_name={family}.safetensors"]
    if name == "img2img":
        sets += ["--set", f"10.image={input_image}"]
    return sets


def expected_graph(name: str, sets: list[str]):
    """The example as the run saw it: the file with the --set overrides applied."""
    graph = load(EXAMPLES / f"{name}.json")
    session = api.Session()
    for assignment in sets[1::2]:
        node, param, value = api.parse_assignment(graph, session.registry, assignment)
        graph.set_param(node, param, value)
    return graph


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def input_image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "in.png"
    Image.open(EXAMPLES / "input" / "fox_sketch.png").resize((64, 64)).save(path)
    return path


CLI_RUNS = [("txt2img", "sd1"), ("txt2img", "sd2"), ("txt2img", "sdxl"), ("txt2img_split", "sd1"),
            ("img2img", "sd1"), ("hiresfix", "sdxl"), ("upscale", "sd2")]


@pytest.fixture(scope="module")
def cli_runs(models_dir, input_image, tmp_path_factory):
    """Every CLI run of the module, two at a time (each process uses one thread). The SD2 txt2img run
    finds its models through NODEGRAPH_MODELS instead of --models."""
    def one(name_family):
        name, family = name_family
        out = tmp_path_factory.mktemp(f"cli-{name}-{family}")
        sets = overrides(name, family, input_image)
        if (name, family) == ("txt2img", "sd2"):
            proc = run_cli("run", str(EXAMPLES / f"{name}.json"), "--out", str(out), "--dtype", "fp32", *sets,
                           NODEGRAPH_MODELS=str(models_dir))
        else:
            proc = run_cli("run", str(EXAMPLES / f"{name}.json"), "--models", str(models_dir), "--out", str(out),
                           "--dtype", "fp32", *sets)
        return name_family, (proc, out, sets)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, CLI_RUNS))


@pytest.mark.parametrize("name, family", CLI_RUNS)
def test_example_runs_through_the_cli(cli_runs, name, family):
    proc, out, sets = cli_runs[(name, family)]
    assert proc.returncode == 0, proc.stderr
    saved = sorted(out.rglob("*.png"))
    assert [p.name for p in saved] == [f"{'upscaled' if name == 'upscale' else name}_00001_.png"]
    assert f"wrote {saved[0]}" in proc.stdout
    assert Image.open(saved[0]).size == FAST[name][1]
    chunks = read_graph_from_png(saved[0])
    assert load(saved[0]) == expected_graph(name, sets)
    prompt = json.loads(chunks["prompt"])
    assert prompt["4"] == {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": f"{family}.safetensors"},
                           "_meta": {"title": "Checkpoint"}}


def test_the_cli_summary_says_which_precision_the_run_used(cli_runs):
    proc = cli_runs[("txt2img", "sd1")][0]
    assert "precision (4 (CheckpointLoaderSimple)): dtype fp32 (requested" in proc.stdout, proc.stdout


def test_ksampler_and_split_node_variants_give_identical_pixels_through_the_cli(cli_runs):
    whole = next(cli_runs[("txt2img", "sd1")][1].rglob("*.png"))
    split = next(cli_runs[("txt2img_split", "sd1")][1].rglob("*.png"))
    np.testing.assert_array_equal(pixels(whole), pixels(split))


def test_a_saved_png_runs_again_to_the_same_image(cli_runs, session, out_dir):
    first = next(cli_runs[("txt2img", "sd1")][1].rglob("*.png"))
    result = session.run(session.load(first))
    (again,) = result.ui["9"]["files"]
    np.testing.assert_array_equal(pixels(Path(again)), pixels(first))


# -- the same through the API ---------------------------------------------------------------------
def run_api(session, name: str, family: str, input_image: Path) -> Path:
    graph = session.load(EXAMPLES / f"{name}.json")
    sets = overrides(name, family, input_image)
    for assignment in sets[1::2]:
        session.set(graph, assignment)
    result = session.run(graph)
    files = [f for ui in result.ui.values() for f in ui.get("files", [])]
    assert len(files) == 1
    path = Path(files[0])
    assert Image.open(path).size == FAST[name][1]
    assert session.load(path) == graph
    return path


@pytest.mark.parametrize("name", ["txt2img", "img2img", "hiresfix", "upscale"])
def test_example_runs_through_the_api(session, input_image, name):
    path = run_api(session, name, "sd1", input_image)
    assert path.parent == session.options.output_dir


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_ksampler_and_split_node_variants_give_identical_pixels_through_the_api(session, input_image, family):
    whole = run_api(session, "txt2img", family, input_image)
    split = run_api(session, "txt2img_split", family, input_image)
    np.testing.assert_array_equal(pixels(whole), pixels(split))


def test_changing_only_the_seed_reruns_only_sampling_and_what_follows(session):
    graph = session.load(EXAMPLES / "txt2img.json")
    for assignment in FAST["txt2img"][0][1::2] + ("4.ckpt_name=sd1.safetensors",):
        session.set(graph, assignment)
    session.run(graph)
    session.set(graph, "3.seed=43")
    stats = session.run(graph).stats
    assert stats.executed == ["3", "8", "9"]
    assert sorted(stats.cached, key=int) == ["4", "5", "6", "7"]


def test_the_automatic_dtype_runs_and_says_what_it_picked(session, input_image):
    from nodegraph import RunOptions

    opts = session.options
    session.options = RunOptions("cpu", "auto", opts.output_dir, opts.models_dirs)
    graph = session.load(EXAMPLES / "txt2img.json")
    for assignment in overrides("txt2img", "sd1", input_image)[1::2]:
        session.set(graph, assignment)
    result = session.run(graph, options=session.options)
    assert result.ui["4"]["dtype"].startswith("dtype ")
    assert "auto" in result.ui["4"]["dtype"]
    assert Image.open(result.ui["9"]["files"][0]).size == (64, 64)
