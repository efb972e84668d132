"""The image-editing examples (examples/inpaint.json, outpaint.json, regional.json): they validate, run end to
end on a tiny random checkpoint with the sizes they promise, and the inpainting example, on the shipped demo
model, leaves every pixel outside its mask as the input had it.

The demo model is retrained from time to time: no test here depends on what it paints inside the mask."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nodekit import ROOT
from PIL import Image

EXAMPLES = ROOT / "examples"
# example -> (node id of its SaveImage, size of the saved picture (w, h))
SAVED = {"inpaint": ("11", (64, 64)), "outpaint": ("10", (64, 64)), "regional": ("10", (128, 64))}


def load_fast(session, name: str, ckpt: str, steps: int = 2):
    graph = session.load(EXAMPLES / f"{name}.json")
    session.set(graph, f"1.ckpt_name={ckpt}")
    session.set(graph, f"8.steps={steps}")
    return graph


def saved_file(result, name: str) -> Path:
    (path,) = result.ui[SAVED[name][0]]["files"]
    return Path(path)


@pytest.mark.parametrize("name", sorted(SAVED))
def test_the_example_validates_with_the_shipped_demo_model(session, name):
    graph = session.load(EXAMPLES / f"{name}.json")
    assert graph.node("1").params["ckpt_name"] == "demo-shapes.safetensors"
    assert [p for p in session.validate(graph) if p.severity == "error"] == []


@pytest.mark.parametrize("name", sorted(SAVED))
def test_the_example_runs_end_to_end_on_a_tiny_checkpoint(session, name):
    result = session.run(load_fast(session, name, "sd1.safetensors"))
    image = Image.open(saved_file(result, name))
    assert image.size == SAVED[name][1]
    assert np.isfinite(np.asarray(image, np.float32)).all()


def test_the_regional_example_has_two_areas_side_by_side_with_their_own_prompts(session):
    graph = session.load(EXAMPLES / "regional.json")
    left, right = graph.node("6").params, graph.node("7").params
    assert (left["x"], left["width"], right["x"], right["width"]) == (0, 64, 64, 64)
    texts = {graph.link_into(area, "conditioning").src for area in ("6", "7")}
    assert len({graph.node(t).params["text"] for t in texts}) == 2


def test_inpainting_on_the_demo_model_leaves_every_pixel_outside_the_mask_as_it_was(session):
    result = session.run(load_fast(session, "inpaint", "demo-shapes.safetensors", steps=3))
    out = np.asarray(Image.open(saved_file(result, "inpaint")).convert("RGB"))
    source = np.asarray(Image.open(EXAMPLES / "input" / "red_circle_masked.png").convert("RGBA"))
    keep = source[..., 3] == 255  # opaque: outside the mask (Load Image's MASK is 1 - alpha)
    assert 0 < keep.sum() < keep.size
    # outside the mask: the 8-bit input, through float and back to 8 bits, unchanged
    np.testing.assert_array_equal(out[keep], source[..., :3][keep])
    # inside it the sampler painted anew (whatever today's demo model paints)
    assert np.abs(out[~keep].astype(int) - source[..., :3][~keep]).max() > 0
