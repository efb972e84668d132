"""Model patch nodes in graphs: a patched and an unpatched use of one loaded checkpoint in one graph give
the results of two separate runs (whichever samples first), and the patches take part in the signature
(changing a patch's param re-samples; changing it back finds the cached result again)."""
from __future__ import annotations

import pytest
import torch

from nodegraph import Graph

# a chain touching every kind of hook: an object patch (model sampling), a weight patch applied in
# place, U-Net block and attention hooks (one drawing random numbers), a CFG function and a post-CFG
# hook that runs the model again
CHAIN = [("ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": True}),
         ("UNetCrossAttentionMultiply", {"q": 1.2, "k": 0.8, "v": 1.5, "out": 0.9}),
         ("FreeU_V2", {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}),
         ("TomePatchModel", {"ratio": 0.5}),
         ("SelfAttentionGuidance", {"scale": 0.5, "blur_sigma": 2.0}),
         ("RescaleCFG", {"multiplier": 0.7})]
SAMPLER = {"seed": 11, "steps": 2, "cfg": 6.0, "sampler_name": "euler_ancestral", "scheduler": "karras",
           "denoise": 1.0}


def build(plain_id: str | None, patched_id: str | None) -> Graph:
    """Checkpoint, prompts, a 64×64 latent; a KSampler on the loaded MODEL (``plain_id``) and one on the
    MODEL through CHAIN (``patched_id``); either may be left out."""
    g = Graph()
    g.add_node("CheckpointLoaderSimple", {"ckpt_name": "sd1.safetensors"}, id="4")
    g.add_node("CLIPTextEncode", {"text": "a red fox in the snow"}, id="6")
    g.add_node("CLIPTextEncode", {"text": "blurry"}, id="7")
    g.add_node("EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1}, id="5")
    for node in ("6", "7"):
        g.connect("4", "CLIP", node, "clip")
    source = "4"
    if patched_id is not None:
        for i, (type_id, params) in enumerate(CHAIN):
            g.add_node(type_id, params, id=str(40 + i))
            g.connect(source, "MODEL", str(40 + i), "model")
            source = str(40 + i)
    for sampler_id, model_id in ((plain_id, "4"), (patched_id, source)):
        if sampler_id is None:
            continue
        g.add_node("KSampler", dict(SAMPLER), id=sampler_id)
        g.connect(model_id, "MODEL", sampler_id, "model")
        g.connect("6", "CONDITIONING", sampler_id, "positive")
        g.connect("7", "CONDITIONING", sampler_id, "negative")
        g.connect("5", "LATENT", sampler_id, "latent_image")
        g.add_node("VAEDecode", id=f"{sampler_id}1")  # an output node each, so that the graph validates
        g.connect(sampler_id, "LATENT", f"{sampler_id}1", "samples")
        g.connect("4", "VAE", f"{sampler_id}1", "vae")
        g.add_node("PreviewImage", id=f"{sampler_id}2")
        g.connect(f"{sampler_id}1", "IMAGE", f"{sampler_id}2", "images")
    return g


def samples(session, graph: Graph, node_id: str) -> torch.Tensor:
    return session.run(graph, outputs=[node_id]).output(node_id)["samples"]


@pytest.mark.parametrize("plain_id, patched_id", [("3", "13"), ("13", "3")],
                         ids=["unpatched-first", "patched-first"])
def test_patched_and_unpatched_uses_in_one_graph_equal_two_separate_runs(session, plain_id, patched_id):
    both = session.run(build(plain_id, patched_id), outputs=[plain_id, patched_id])
    session.cache.clear()
    alone_plain = samples(session, build(plain_id, None), plain_id)
    session.cache.clear()
    alone_patched = samples(session, build(None, patched_id), patched_id)
    # the same computations on the same shapes, one thread: bit for bit
    assert torch.equal(both.output(plain_id)["samples"], alone_plain)
    assert torch.equal(both.output(patched_id)["samples"], alone_patched)
    assert (alone_plain - alone_patched).abs().max() > 1e-3  # the patches do change the result


def test_a_patch_param_joins_the_signature_and_the_cache_stays_right(session):
    graph = build(None, "13")
    first = session.run(graph, outputs=["13"])
    again = session.run(graph, outputs=["13"])
    assert "13" in again.stats.cached and torch.equal(again.output("13")["samples"], first.output("13")["samples"])
    session.set(graph, "42.b2=1.0")  # FreeU_V2's backbone factor at the 2× level (the tiny U-Net has no 4× level)
    changed = session.run(graph, outputs=["13"])
    assert {"42", "13"} <= set(changed.stats.executed) and "4" in changed.stats.cached
    assert (changed.output("13")["samples"] - first.output("13")["samples"]).abs().max() > 1e-4
    session.set(graph, "42.b2=1.4")
    back = session.run(graph, outputs=["13"])
    assert torch.equal(back.output("13")["samples"], first.output("13")["samples"])


def test_after_a_run_with_a_weight_patch_the_loaded_weights_are_the_files(session, models_dir):
    from safetensors.torch import load_file

    result = session.run(build("3", "13"), outputs=["4", "3", "13"])
    unet = result.output("4", "MODEL").unet
    prefix = "model.diffusion_model."
    stored = {k[len(prefix):]: v for k, v in load_file(str(models_dir / "checkpoints" / "sd1.safetensors")).items()
              if k.startswith(prefix)}
    state = unet.state_dict()
    assert stored.keys() == state.keys()
    assert all(torch.equal(stored[k], state[k]) for k in stored)
