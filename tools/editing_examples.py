"""Make the image-editing examples: their input pictures, their graph files, and the README's before/after
picture.

    python tools/editing_examples.py inputs     # examples/input/red_circle_masked.png, orange_circle_cut.png
    python tools/editing_examples.py graphs     # examples/inpaint.json, outpaint.json, regional.json
    python tools/editing_examples.py picture    # runs the three examples → docs/images/editing-examples.png

The inputs are drawn by the demo world's renderer (tools/demo_data.py), so they look like what the shipped
demo model learnt. The masked input carries its mask the way the editor's mask painter saves one: alpha 0
(transparent) where the picture is to be repainted, which Load Image reads as MASK 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
INPUT = EXAMPLES / "input"
PICTURE = ROOT / "docs" / "images" / "editing-examples.png"
CHECKPOINT = "demo-shapes.safetensors"


def make_inputs() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    import demo_data

    circle = demo_data.render(demo_data.Scene("red", "circle", "blue", 0.25, 0.25, 0.5))
    alpha = np.full((64, 64, 1), 255, np.uint8)
    alpha[12:52, 12:52] = 0  # the square around the circle is to be repainted
    Image.fromarray(np.concatenate([circle, alpha], -1), "RGBA").save(INPUT / "red_circle_masked.png")
    cut = demo_data.render(demo_data.Scene("orange", "circle", "green", 0.36, 0.25, 0.5))[:, :40]
    Image.fromarray(np.ascontiguousarray(cut)).save(INPUT / "orange_circle_cut.png")


# -- the graphs -------------------------------------------------------------------------------------
def _common(g, prompt: str, title: str = "Positive prompt"):
    ck = g.add_node("CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT}, id="1", title="Demo checkpoint", pos=(20, 60))
    pos = g.add_node("CLIPTextEncode", {"text": prompt}, id="2", title=title, pos=(380, 20))
    neg = g.add_node("CLIPTextEncode", {"text": ""}, id="3", title="Negative prompt", pos=(380, 240))
    g.connect(ck, "CLIP", pos, "clip")
    g.connect(ck, "CLIP", neg, "clip")
    return ck, pos, neg


def _sample_and_decode(g, ck, pos, neg, latent, seed: int, at: float):
    ks = g.add_node("KSampler", {"seed": seed, "steps": 20, "cfg": 5.0, "sampler_name": "euler",
                                 "scheduler": "normal", "denoise": 1.0}, id="8", pos=(at, 60))
    g.connect(ck, "MODEL", ks, "model")
    g.connect(pos, "CONDITIONING", ks, "positive")
    g.connect(neg, "CONDITIONING", ks, "negative")
    g.connect(*latent, ks, "latent_image")
    dec = g.add_node("VAEDecode", {}, id="9", pos=(at + 340, 60))
    g.connect(ks, "LATENT", dec, "samples")
    g.connect(ck, "VAE", dec, "vae")
    return dec


def inpaint_graph():
    from nodegraph.graph import Graph

    g = Graph()
    g.meta["description"] = (
        "Inpainting on the demo model: the red circle of examples/input/red_circle_masked.png is repainted "
        "yellow. The picture's transparent square is its mask (Load Image's MASK; paint your own with the "
        "editor's mask painter, right-click Load Image). VAE Encode + Set Latent Noise Mask make the sampler "
        "repaint only inside the mask (denoise 1.0), and Image Composite Masked pastes the result back onto the "
        "original, so every pixel outside the mask is the input's own. Try other colours or shapes.")
    ck, pos, neg = _common(g, "a yellow circle on a blue background")
    image = g.add_node("LoadImage", {"image": "red_circle_masked.png"}, id="4", title="Picture and mask", pos=(20, 420))
    enc = g.add_node("VAEEncode", {}, id="5", pos=(380, 440))
    g.connect(image, "IMAGE", enc, "pixels")
    g.connect(ck, "VAE", enc, "vae")
    noise_mask = g.add_node("SetLatentNoiseMask", {}, id="6", pos=(640, 440))
    g.connect(enc, "LATENT", noise_mask, "samples")
    g.connect(image, "MASK", noise_mask, "mask")
    dec = _sample_and_decode(g, ck, pos, neg, (noise_mask, "LATENT"), seed=2, at=900)
    paste = g.add_node("ImageCompositeMasked", {"x": 0, "y": 0, "resize_source": False}, id="10",
                       title="Paste into the original", pos=(1240, 260))
    g.connect(image, "IMAGE", paste, "destination")
    g.connect(dec, "IMAGE", paste, "source")
    g.connect(image, "MASK", paste, "mask")
    save = g.add_node("SaveImage", {"filename_prefix": "inpaint"}, id="11", pos=(1580, 260))
    g.connect(paste, "IMAGE", save, "images")
    return g


def outpaint_graph():
    from nodegraph.graph import Graph

    g = Graph()
    g.meta["description"] = (
        "Outpainting on the demo model: examples/input/orange_circle_cut.png (40x64, the circle cut off) is "
        "padded 24 pixels to the right; Pad Image for Outpainting gives the new strip's mask, faded 8 pixels "
        "into the picture, and VAE Encode (for Inpainting) fills it grey for the sampler to paint, which "
        "completes the circle and the background.")
    ck, pos, neg = _common(g, "an orange circle on a green background")
    image = g.add_node("LoadImage", {"image": "orange_circle_cut.png"}, id="4", title="Picture", pos=(20, 420))
    pad = g.add_node("ImagePadForOutpaint", {"left": 0, "top": 0, "right": 24, "bottom": 0, "feathering": 8},
                     id="5", pos=(380, 440))
    g.connect(image, "IMAGE", pad, "image")
    enc = g.add_node("VAEEncodeForInpaint", {"grow_mask_by": 8}, id="6", pos=(640, 440))
    g.connect(pad, "IMAGE", enc, "pixels")
    g.connect(ck, "VAE", enc, "vae")
    g.connect(pad, "MASK", enc, "mask")
    dec = _sample_and_decode(g, ck, pos, neg, (enc, "LATENT"), seed=5, at=900)
    save = g.add_node("SaveImage", {"filename_prefix": "outpaint"}, id="10", pos=(1580, 60))
    g.connect(dec, "IMAGE", save, "images")
    return g


def regional_graph():
    from nodegraph.graph import Graph

    g = Graph()
    g.meta["description"] = (
        "Regional prompts on the demo model: a 128x64 picture whose left 64x64 follows one prompt and whose "
        "right 64x64 follows another (Conditioning (Set Area)), over a prompt for the whole picture. The areas' "
        "strength 5 makes them outweigh the whole-picture prompt inside them (the demo model only knows 64x64 "
        "pictures, so the whole-picture prediction is a poor guide there).")
    ck, base, neg = _common(g, "a blue background", title="Whole picture")
    left = g.add_node("CLIPTextEncode", {"text": "a red circle on a blue background"}, id="4", title="Left prompt",
                      pos=(380, 460))
    right = g.add_node("CLIPTextEncode", {"text": "a yellow triangle on a blue background"}, id="5",
                       title="Right prompt", pos=(380, 680))
    for node in (left, right):
        g.connect(ck, "CLIP", node, "clip")
    area_l = g.add_node("ConditioningSetArea", {"width": 64, "height": 64, "x": 0, "y": 0, "strength": 5.0},
                        id="6", title="Left area", pos=(740, 460))
    area_r = g.add_node("ConditioningSetArea", {"width": 64, "height": 64, "x": 64, "y": 0, "strength": 5.0},
                        id="7", title="Right area", pos=(740, 700))
    g.connect(left, "CONDITIONING", area_l, "conditioning")
    g.connect(right, "CONDITIONING", area_r, "conditioning")
    both = g.add_node("ConditioningCombine", {}, id="12", pos=(1060, 560))
    g.connect(area_l, "CONDITIONING", both, "conditioning_1")
    g.connect(area_r, "CONDITIONING", both, "conditioning_2")
    everything = g.add_node("ConditioningCombine", {}, id="13", pos=(1060, 360))
    g.connect(both, "CONDITIONING", everything, "conditioning_1")
    g.connect(base, "CONDITIONING", everything, "conditioning_2")
    latent = g.add_node("EmptyLatentImage", {"width": 128, "height": 64, "batch_size": 1}, id="14",
                        pos=(1060, 760))
    dec = _sample_and_decode(g, ck, everything, neg, (latent, "LATENT"), seed=2, at=1360)
    save = g.add_node("SaveImage", {"filename_prefix": "regional"}, id="10", pos=(2040, 60))
    g.connect(dec, "IMAGE", save, "images")
    return g


GRAPHS = {"inpaint": inpaint_graph, "outpaint": outpaint_graph, "regional": regional_graph}


def write_graphs() -> None:
    from nodegraph import api

    for name, build in GRAPHS.items():
        api.save(build(), EXAMPLES / f"{name}.json")


# -- the README picture ----------------------------------------------------------------------------
def mask_overlay(path: Path) -> Image.Image:
    """The picture with its transparent (to be repainted) part tinted, as the editor shows a painted mask."""
    rgba = np.asarray(Image.open(path).convert("RGBA")).astype(np.float32)
    hole = (255.0 - rgba[..., 3:]) / 255.0
    tint = np.array([255.0, 255.0, 255.0])
    rgb = rgba[..., :3] * (1 - 0.55 * hole) + tint * 0.55 * hole
    return Image.fromarray(rgb.round().astype(np.uint8))


def make_picture(out_dir: Path) -> None:
    from nodegraph import api

    session = api.Session()
    results = {}
    for name, build in GRAPHS.items():
        graph = build()
        result = session.run(graph, out_dir=out_dir)
        results[name] = Image.open(result.ui["11" if name == "inpaint" else "10"]["files"][0]).convert("RGB")
    rows = [("inpaint", mask_overlay(INPUT / "red_circle_masked.png"), results["inpaint"]),
            ("outpaint", Image.open(INPUT / "orange_circle_cut.png").convert("RGB"), results["outpaint"]),
            ("regional", None, results["regional"])]
    scale, gap, label_w = 3, 16, 90
    width = label_w + 64 * scale + gap + 128 * scale
    canvas = Image.new("RGB", (width + gap, len(rows) * (64 * scale + gap) + gap), (32, 34, 38))
    draw = ImageDraw.Draw(canvas)
    for i, (name, before, after) in enumerate(rows):
        y = gap + i * (64 * scale + gap)
        draw.text((gap, y + 8), name, fill=(220, 220, 220))
        if before is not None:
            canvas.paste(before.resize((before.width * scale, before.height * scale), Image.NEAREST), (label_w, y))
            draw.text((label_w, y + 64 * scale - 14), "before", fill=(20, 20, 20))
        x = label_w + 64 * scale + gap if before is not None else label_w
        canvas.paste(after.resize((after.width * scale, after.height * scale), Image.NEAREST), (x, y))
    PICTURE.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(PICTURE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("inputs", "graphs", "picture"))
    parser.add_argument("--out", type=Path, default=Path("output"), help="where the picture's runs save")
    args = parser.parse_args()
    {"inputs": make_inputs, "graphs": write_graphs, "picture": lambda: make_picture(args.out)}[args.what]()


if __name__ == "__main__":
    main()
