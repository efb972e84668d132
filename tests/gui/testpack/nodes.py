"""The test pack's nodes (numpy only)."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from nodegraph import Boolean, Combo, Float, Int, NodeError, RunContext, SocketType, String, node

SOCKET_TYPES = (
    SocketType("MODEL", "#b39ddb"),
    SocketType("CLIP", "#ffd54f"),
    SocketType("VAE", "#ff6e6e"),
    SocketType("CONDITIONING", "#ffa931"),
    SocketType("LATENT", "#ff9cf9"),
    SocketType("IMAGE", "#64b5f6"),
)

SAMPLERS = ("euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddim")
SCHEDULERS = ("normal", "karras", "exponential", "simple")


@node("Number", display_name="Number", category="utils", params=[Float("value", 1.0, step=0.1)],
      outputs={"FLOAT": "FLOAT"})
def number(value: float) -> float:
    """A constant number."""
    return value


@node("Text", display_name="Text", category="text",
      params=[String("text", "hello", multiline=True)], outputs={"STRING": "STRING"})
def text(text: str) -> str:
    """A constant text."""
    return text


@node("SolidImage", display_name="Solid Image", category="image",
      params=[Int("width", 64, min=1, max=4096, step=8), Int("height", 48, min=1, max=4096, step=8),
              Float("red", 1.0, min=0, max=1, step=0.01), Float("green", 0.0, min=0, max=1, step=0.01),
              Float("blue", 0.0, min=0, max=1, step=0.01)],
      outputs={"IMAGE": "IMAGE"})
def solid_image(width: int, height: int, red: float, green: float, blue: float) -> Any:
    """An IMAGE [1,H,W,3] of one colour."""
    img = np.empty((1, height, width, 3), dtype=np.float32)
    img[..., 0], img[..., 1], img[..., 2] = red, green, blue
    return img


@node("Slow", display_name="Slow Steps", category="sampling", inputs={"image": "IMAGE"},
      params=[Int("steps", 5, min=1, max=10000), Float("delay", 0.05, min=0, max=10, step=0.01)],
      outputs={"IMAGE": "IMAGE"})
def slow(image: Any, steps: int, delay: float, ctx: RunContext) -> Any:
    """Waits ``delay`` seconds per step, reporting progress with a preview (interruptible)."""
    for i in range(steps):
        time.sleep(delay)
        preview = np.full((8, 8, 3), int(255 * (i + 1) / steps), dtype=np.uint8)
        ctx.progress(i + 1, steps, preview)
    return image


@node("Fail", display_name="Fail", category="utils", inputs={"image": "IMAGE"},
      params=[String("message", "this node always fails")], outputs={"IMAGE": "IMAGE"})
def fail(image: Any, message: str) -> Any:
    """Raises ValueError(message)."""
    raise ValueError(message)


@node("Refuse", display_name="Refuse", category="utils", inputs={"image": "IMAGE"},
      params=[String("message", "this node refuses its input")], outputs={"IMAGE": "IMAGE"})
def refuse(image: Any, message: str) -> Any:
    """Raises NodeError(message): a failure on purpose, as a node whose input is wrong reports it."""
    raise NodeError(message)


@node("Preview", display_name="Preview Image", category="image", inputs={"images": "IMAGE"},
      output_node=True)
def preview(images: Any, ctx: RunContext) -> None:
    """Shows its images (ctx.ui["images"])."""
    ctx.ui["images"] = [images]


@node("Seeded", display_name="Seeded", category="utils",
      params=[Int("seed", 0, min=0, max=2**64 - 1, control_after_run="increment")],
      outputs={"FLOAT": "FLOAT"})
def seeded(seed: int) -> float:
    """Its seed as a number."""
    return float(seed % 1000)


# -- shaped like the SD pack (for big graphs) ---------------------------------------------------
@node("CheckpointLoader", display_name="Load Checkpoint", category="loaders",
      params=[Combo("ckpt_name", ["sd15-demo.safetensors", "sdxl-base.safetensors"])],
      outputs={"MODEL": "MODEL", "CLIP": "CLIP", "VAE": "VAE"})
def checkpoint_loader(ckpt_name: str) -> tuple:
    return ("model", "clip", "vae")


@node("TextEncode", display_name="CLIP Text Encode", category="conditioning",
      inputs={"clip": "CLIP"}, params=[String("text", "a photo of a cat", multiline=True)],
      outputs={"CONDITIONING": "CONDITIONING"})
def text_encode(clip: Any, text: str) -> Any:
    return [text]


@node("EmptyLatent", display_name="Empty Latent Image", category="latent",
      params=[Int("width", 512, min=16, max=8192, step=8), Int("height", 512, min=16, max=8192, step=8),
              Int("batch_size", 1, min=1, max=64)],
      outputs={"LATENT": "LATENT"})
def empty_latent(width: int, height: int, batch_size: int) -> Any:
    return {"samples": np.zeros((batch_size, 4, height // 8, width // 8), np.float32)}


@node("Sampler", display_name="KSampler", category="sampling",
      inputs={"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING",
              "latent_image": "LATENT"},
      params=[Int("seed", 0, min=0, max=2**64 - 1, control_after_run="fixed"),
              Int("steps", 20, min=1, max=10000), Float("cfg", 8.0, min=0, max=100, step=0.1),
              Combo("sampler_name", SAMPLERS), Combo("scheduler", SCHEDULERS),
              Float("denoise", 1.0, min=0, max=1, step=0.01)],
      outputs={"LATENT": "LATENT"})
def sampler(model: Any, positive: Any, negative: Any, latent_image: Any, seed: int, steps: int,
            cfg: float, sampler_name: str, scheduler: str, denoise: float) -> Any:
    return latent_image


@node("Decode", display_name="VAE Decode", category="latent", inputs={"samples": "LATENT", "vae": "VAE"},
      outputs={"IMAGE": "IMAGE"})
def decode(samples: Any, vae: Any) -> Any:
    s = samples["samples"]
    return np.full((s.shape[0], s.shape[2] * 8, s.shape[3] * 8, 3), 0.5, np.float32)


@node("Save", display_name="Save Image", category="image", inputs={"images": "IMAGE"},
      params=[String("filename_prefix", "NodeGraph"), Boolean("embed_graph", True)], output_node=True)
def save(images: Any, filename_prefix: str, embed_graph: bool, ctx: RunContext) -> None:
    ctx.ui["images"] = [images]


@node("SavePNG", display_name="Save PNG", category="image", inputs={"images": "IMAGE"},
      params=[String("filename_prefix", "test")], output_node=True)
def save_png(images: Any, filename_prefix: str, ctx: RunContext) -> None:
    """Writes the first image to <output>/<prefix>_<n>.png and shows it by path, as SaveImage does."""
    from PIL import Image

    folder = ctx.options.output_dir
    folder.mkdir(parents=True, exist_ok=True)
    n = len(list(folder.glob(f"{filename_prefix}_*.png"))) + 1
    path = folder / f"{filename_prefix}_{n:05d}.png"
    pixels = np.clip(np.asarray(images[0])[..., :3], 0, 1) * 255
    Image.fromarray(pixels.round().astype(np.uint8)).save(path)
    ctx.ui["files"] = [str(path)]
    ctx.ui["images"] = [str(path)]


NODES = [number, text, solid_image, slow, fail, refuse, preview, save_png, seeded, checkpoint_loader,
         text_encode, empty_latent, sampler, decode, save]
