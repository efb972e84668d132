"""SaveAnimatedWEBP and SaveAnimatedPNG: one file holding every image of the batch as a frame, named like
SaveImage's files, carrying the graph where ComfyUI's animated files carry it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from nodekit import FakeContext, options_for
from PIL import Image, ImageSequence

from nodegraph import Graph
from nodes.animation import save_animated_png, save_animated_webp
from nodes.imageio import read_graph_from_png


def frames(count=3, height=10, width=12):
    """Frames of distinct flat colours (exact in 8 bits)."""
    values = torch.tensor([[255, 0, 0], [0, 128, 255], [20, 200, 60], [255, 255, 255]][:count],
                          dtype=torch.float32) / 255
    return values[:, None, None, :].expand(count, height, width, 3).contiguous()


def read_frames(path):
    with Image.open(path) as img:
        durations = []
        pictures = []
        for frame in ImageSequence.Iterator(img):
            pictures.append(np.asarray(frame.convert("RGB")))  # loads the frame, which sets its duration
            durations.append(frame.info.get("duration"))
        return pictures, durations


@pytest.fixture
def ctx(tmp_path):
    graph = Graph()
    context = FakeContext(options_for(tmp_path, out_dir=tmp_path / "out"), graph=graph)
    return context


def test_save_animated_webp_writes_one_lossless_file_with_every_frame(ctx):
    images = frames()
    save_animated_webp(images=images, filename_prefix="clip", fps=4.0, lossless=True, quality=80, method="default",
                       ctx=ctx)
    path = ctx.ui["files"][0]
    assert path.endswith("clip_00001_.webp") and ctx.ui["images"] == [path]
    pictures, durations = read_frames(path)
    assert len(pictures) == 3 and durations == [250, 250, 250]
    for picture, image in zip(pictures, images):
        np.testing.assert_array_equal(picture, (image.numpy() * 255).round().astype(np.uint8))


def test_save_animated_png_writes_an_apng_with_every_frame(ctx):
    images = frames(4)
    save_animated_png(images=images, filename_prefix="anim/clip", fps=10.0, compress_level=9, ctx=ctx)
    path = ctx.ui["files"][0]
    assert path.endswith("anim/clip_00001_.png")
    pictures, durations = read_frames(path)
    assert len(pictures) == 4 and durations == [100.0] * 4
    np.testing.assert_array_equal(pictures[1], (images[1].numpy() * 255).round().astype(np.uint8))


@pytest.mark.parametrize("save", ["webp", "png"])
def test_animated_files_carry_the_graph(ctx, save):
    if save == "webp":
        save_animated_webp(images=frames(2), filename_prefix="g", fps=6.0, lossless=False, quality=50,
                           method="fastest", ctx=ctx)
    else:
        save_animated_png(images=frames(2), filename_prefix="g", fps=6.0, compress_level=1, ctx=ctx)
    chunks = read_graph_from_png(ctx.ui["files"][0])
    assert json.loads(chunks["nodegraph"])["format"] == "nodegraph"


def test_a_second_save_takes_the_next_counter_and_overwrites_nothing(ctx):
    for _ in range(2):
        save_animated_webp(images=frames(1), filename_prefix="same", fps=1.0, lossless=True, quality=80,
                           method="default", ctx=ctx)
    assert ctx.ui["files"][0].endswith("same_00002_.webp")


def test_a_prefix_leaving_the_output_folder_is_refused(ctx):
    from nodes.imageio import UnsafePathError

    with pytest.raises(UnsafePathError, match=r"contains '\.\.'"):
        save_animated_png(images=frames(1), filename_prefix="../escape", fps=1.0, compress_level=1, ctx=ctx)
