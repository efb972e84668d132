"""Graphs for the editor's tests, benchmark and screenshots (types from tests/gui/testpack)."""
from __future__ import annotations

from pathlib import Path

from nodegraph.graph import Graph, Group, Link

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PACK_FOLDERS = [REPO / "plugins", HERE / "testpack"]
P = "testpack."


def registry():
    """A registry with the example pack and the test pack, loaded through the plugin loader."""
    from nodegraph.plugins import load_registry

    return load_registry(builtin=False, entry_points=False, folders=PACK_FOLDERS)


def pipeline(g: Graph, x: float, y: float, prompt: str = "a lighthouse at dusk, oil painting",
             seed: int = 42) -> list[str]:
    """Seven nodes shaped like a text-to-image pipeline, laid out from (x, y)."""
    ck = g.add_node(P + "CheckpointLoader", {"ckpt_name": "sd15-demo.safetensors"}, pos=(x, y + 120))
    pos = g.add_node(P + "TextEncode", {"text": prompt}, pos=(x + 300, y))
    neg = g.add_node(P + "TextEncode", {"text": "blurry, low quality"}, pos=(x + 300, y + 170),
                     title="Negative")
    lat = g.add_node(P + "EmptyLatent", {"width": 512, "height": 512, "batch_size": 1},
                     pos=(x + 300, y + 340))
    ks = g.add_node(P + "Sampler", {"seed": seed, "steps": 20, "cfg": 7.5, "sampler_name": "euler",
                                    "scheduler": "karras", "denoise": 1.0}, pos=(x + 660, y + 60))
    dec = g.add_node(P + "Decode", {}, pos=(x + 960, y + 60))
    sv = g.add_node(P + "Save", {"filename_prefix": "NodeGraph", "embed_graph": True},
                    pos=(x + 1180, y + 60))
    for link in (Link(ck.id, "CLIP", pos.id, "clip"), Link(ck.id, "CLIP", neg.id, "clip"),
                 Link(ck.id, "MODEL", ks.id, "model"), Link(pos.id, "CONDITIONING", ks.id, "positive"),
                 Link(neg.id, "CONDITIONING", ks.id, "negative"),
                 Link(lat.id, "LATENT", ks.id, "latent_image"), Link(ks.id, "LATENT", dec.id, "samples"),
                 Link(ck.id, "VAE", dec.id, "vae"), Link(dec.id, "IMAGE", sv.id, "images")):
        g.add_link(link)
    return [n.id for n in (ck, pos, neg, lat, ks, dec, sv)]


def big_graph(n_nodes: int) -> Graph:
    """About ``n_nodes`` nodes: pipelines on a grid (7 nodes each), a group every 4th."""
    g = Graph()
    per_row = 4
    i = 0
    while len(g) + 7 <= max(n_nodes, 7):
        x, y = (i % per_row) * 1500, (i // per_row) * 560
        pipeline(g, x, y, seed=i)
        if i % 4 == 0:
            g.groups.append(Group(f"Pipeline {i}", (x - 20, y - 50, 1440, 520)))
        i += 1
    return g


def image_graph() -> Graph:
    """SolidImage → Slow → Preview: runs in a fraction of a second and shows an image."""
    g = Graph()
    img = g.add_node(P + "SolidImage", {"width": 64, "height": 48, "red": 1.0, "green": 0.0,
                                        "blue": 0.0}, pos=(0, 0))
    slow = g.add_node(P + "Slow", {"steps": 3, "delay": 0.01}, pos=(300, 0))
    pv = g.add_node(P + "Preview", {}, pos=(560, 0))
    g.connect(img, "IMAGE", slow, "image")
    g.connect(slow, "IMAGE", pv, "images")
    return g


def showcase_graph() -> Graph:
    """A small graph that runs in a blink and shows what the editor draws (screenshots)."""
    g = Graph()
    red = g.add_node(P + "SolidImage", {"width": 96, "height": 64, "red": 0.95, "green": 0.45,
                                        "blue": 0.1}, pos=(0, 0), title="Sunset colour")
    inv = g.add_node("example_pack.InvertImage", {}, pos=(330, 190))
    slow = g.add_node(P + "Slow", {"steps": 8, "delay": 0.01}, pos=(330, 0), title="Work")
    pv1 = g.add_node(P + "Preview", {}, pos=(620, 0))
    pv2 = g.add_node(P + "Preview", {}, pos=(620, 260), title="Inverted")
    txt = g.add_node("example_pack.PromptTemplate", {}, pos=(0, 330))
    save = g.add_node("example_pack.SaveText", {"filename_prefix": "notes"}, pos=(330, 400))
    g.connect(red, "IMAGE", slow, "image")
    g.connect(red, "IMAGE", inv, "image")
    g.connect(slow, "IMAGE", pv1, "images")
    g.connect(inv, "IMAGE", pv2, "images")
    g.connect(txt, "text", save, "text")
    g.groups.append(Group("Images", (-20, -50, 900, 470), "#3d5a80"))
    return g
