"""Torch-free nodes for the batch tests (loaded as the folder pack ``batchtest`` through
NODEGRAPH_PLUGIN_PATH, in the test process and in every worker process).

- ``batchtest.LoadBlob`` reads a "model" file from the checkpoints folders; each real read counts
  as a model load (reported through ``ctx.model_loaded()``, as the built-in loaders do).
- ``batchtest.Render`` turns the model bytes, a seed and a prompt into deterministic RGB pixels;
  it can sleep (to be killed mid-item), fail for one seed (a graph error) or kill its own
  process for one seed (a worker death).
- ``batchtest.SavePNG`` writes PNGs with the graph embedded, as SaveImage does.
- ``batchtest.Pause`` passes images through after a pause: put into a real txt2img graph, it
  keeps an item running long enough for a test to kill its worker or node mid-item.
"""
from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

from nodegraph import (Combo, Float, Int, RunContext, SocketType, String, hookimpl, node)


def _checkpoints(options) -> list[str]:
    from nodes.folders import ModelFolders

    return ModelFolders(options.models_dirs).list("checkpoints")


@node("LoadBlob", category="loaders", params=[Combo("ckpt_name", _checkpoints)],
      outputs={"BLOB": "BT_BLOB"})
def load_blob(ckpt_name: str, ctx: RunContext) -> bytes:
    from nodes.folders import ModelFolders

    ctx.model_loaded()
    return ModelFolders(ctx.options.models_dirs).find("checkpoints", ckpt_name).read_bytes()


@node("Render", category="sampling", inputs={"blob": "BT_BLOB"},
      params=[Int("seed", 0, min=0, max=2**32 - 1), String("prompt", "a fox"),
              Int("width", 8, min=1, max=256), Int("height", 8, min=1, max=256),
              Int("batch_size", 1, min=1, max=8), Float("delay", 0.0, min=0.0, max=60.0),
              Int("fail_seed", -1, min=-1), Int("crash_seed", -1, min=-1)],
      outputs={"PIXELS": "BT_PIXELS"})
def render(blob: bytes, seed: int, prompt: str, width: int, height: int, batch_size: int,
           delay: float, fail_seed: int, crash_seed: int) -> list[tuple[int, int, bytes]]:
    if seed == crash_seed:
        os._exit(3)
    if seed == fail_seed:
        raise ValueError(f"seed {seed} is the one this test graph refuses")
    if delay:
        time.sleep(delay)
    images = []
    base = hashlib.sha256(blob).digest()
    for element in range(batch_size):
        stream = bytearray()
        block = hashlib.sha256(base + f"{seed}|{prompt}|{element}".encode()).digest()
        while len(stream) < width * height * 3:
            stream += block
            block = hashlib.sha256(block).digest()
        images.append((width, height, bytes(stream[: width * height * 3])))
    return images


@node("SavePNG", category="image", output_node=True, inputs={"pixels": "BT_PIXELS"},
      params=[String("filename_prefix", "bt")])
def save_png(pixels: list[tuple[int, int, bytes]], filename_prefix: str, ctx: RunContext) -> None:
    from PIL import Image, PngImagePlugin

    from nodegraph import format as graph_format

    out = Path(ctx.options.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("nodegraph", graph_format.dumps(ctx.graph))
    files = []
    for i, (w, h, data) in enumerate(pixels):
        buffer = io.BytesIO()
        Image.frombytes("RGB", (w, h), data).save(buffer, format="PNG", pnginfo=info)
        path = out / f"{filename_prefix}_{i + 1:05d}_.png"
        path.write_bytes(buffer.getvalue())
        files.append(str(path))
    ctx.ui["files"] = files


@node("Pause", category="testing", inputs={"images": "IMAGE"},
      params=[Float("seconds", 0.5, min=0.0, max=60.0)], outputs={"IMAGE": "IMAGE"})
def pause(images, seconds: float):
    time.sleep(seconds)
    return images


@hookimpl
def nodegraph_register_types():
    return [SocketType("BT_BLOB", "#888888", "model bytes"),
            SocketType("BT_PIXELS", "#888888", "RGB images as bytes")]


@hookimpl
def nodegraph_register_nodes():
    return [load_blob, render, save_png, pause]
