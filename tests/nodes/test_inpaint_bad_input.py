"""Inpainting's bad input, through whole graphs on tiny random checkpoints: a mask batch that cannot apply is
refused naming the node and both shapes; a mask of another size is resized as ComfyUI resizes it (bilinear,
checked against OpenCV); an all-zero mask changes nothing (the result is the VAE round trip, never NaN)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from numerics import path_rtol

from nodegraph import NodeExecutionError
from nodegraph.graph import Graph


def checkpoint(g: Graph) -> None:
    g.add_node("CheckpointLoaderSimple", {"ckpt_name": "sd1.safetensors"}, id="1")
    for nid, text in (("2", "a red circle"), ("3", "")):
        g.add_node("CLIPTextEncode", {"text": text}, id=nid)
        g.connect("1", "CLIP", nid, "clip")


def solid_picture(g: Graph, nid: str, batch: int, colour: int = 0x4080C0, size: int = 64) -> None:
    g.add_node("EmptyImage", {"width": size, "height": size, "batch_size": batch, "color": colour}, id=nid)


def mask_batch(g: Graph, nid: str, batch: int, value: int, size: int = 64) -> None:
    """A MASK of ``batch`` masks, all ``value``/255 (the red channel of a solid picture)."""
    solid_picture(g, nid + "0", batch, value << 16, size)
    g.add_node("ImageToMask", {"channel": "red"}, id=nid)
    g.connect(nid + "0", "IMAGE", nid, "image")


def test_a_mask_batch_that_cannot_apply_is_refused_naming_the_node_and_both_shapes(session):
    g = Graph()
    checkpoint(g)
    solid_picture(g, "4", batch=2)
    mask_batch(g, "5", batch=3, value=255)
    g.add_node("VAEEncodeForInpaint", {"grow_mask_by": 6}, id="6")
    g.connect("4", "IMAGE", "6", "pixels")
    g.connect("1", "VAE", "6", "vae")
    g.connect("5", "MASK", "6", "mask")
    with pytest.raises(NodeExecutionError) as info:
        session.run(g, outputs=["6"], validate=False)
    error = info.value
    assert (error.node_id, error.node_type, error.expected) == ("6", "VAEEncodeForInpaint", True)
    assert "node 6 (VAEEncodeForInpaint) failed: pixels (2, 64, 64, 3) and mask (3, 64, 64)" in str(error)


def test_a_smaller_mask_is_resized_bilinearly_to_the_picture_as_opencv_does(session):
    g = Graph()
    checkpoint(g)
    solid_picture(g, "4", batch=1)
    g.add_node("SolidMask", {"value": 0.0, "width": 16, "height": 16}, id="7")
    g.add_node("SolidMask", {"value": 1.0, "width": 6, "height": 5}, id="8")
    g.add_node("MaskComposite", {"x": 5, "y": 3, "operation": "add"}, id="5")
    g.connect("7", "MASK", "5", "destination")
    g.connect("8", "MASK", "5", "source")
    g.add_node("InpaintModelConditioning", {"noise_mask": True}, id="6")
    for name, src in (("positive", ("2", "CONDITIONING")), ("negative", ("3", "CONDITIONING")),
                      ("vae", ("1", "VAE")), ("pixels", ("4", "IMAGE")), ("mask", ("5", "MASK"))):
        g.connect(*src, "6", name)
    result = session.run(g, outputs=["5", "6"], validate=False)
    small = result.output("5").numpy()[0]
    # ComfyUI resizes with torch's bilinear, corners not aligned: OpenCV's INTER_LINEAR when enlarging
    expected = cv2.resize(small, (64, 64), interpolation=cv2.INTER_LINEAR)
    mask = result.output("6", "latent")["noise_mask"]
    assert mask.shape == (1, 1, 64, 64)
    np.testing.assert_allclose(mask[0, 0].numpy(), expected, atol=1e-6)  # float32 rounding of the weights


@pytest.mark.parametrize("encoder", ["SetLatentNoiseMask", "VAEEncodeForInpaint"])
def test_an_all_zero_mask_changes_nothing_but_the_vae_round_trip(session, encoder):
    """Sampled with an all-zero mask at denoise 1, the latent is kept bit for bit, so the decoded picture is
    the picture encoded and decoded; nothing is NaN."""
    g = Graph()
    checkpoint(g)
    solid_picture(g, "4", batch=1)
    mask_batch(g, "5", batch=1, value=0)
    g.add_node("VAEEncode", {}, id="10")
    g.connect("4", "IMAGE", "10", "pixels")
    g.connect("1", "VAE", "10", "vae")
    if encoder == "SetLatentNoiseMask":
        g.add_node("SetLatentNoiseMask", {}, id="6")
        g.connect("10", "LATENT", "6", "samples")
    else:
        g.add_node("VAEEncodeForInpaint", {"grow_mask_by": 6}, id="6")
        g.connect("4", "IMAGE", "6", "pixels")
        g.connect("1", "VAE", "6", "vae")
    g.connect("5", "MASK", "6", "mask")
    g.add_node("KSampler", {"seed": 1, "steps": 3, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal",
                            "denoise": 1.0}, id="8")
    for name, src in (("model", ("1", "MODEL")), ("positive", ("2", "CONDITIONING")),
                      ("negative", ("3", "CONDITIONING")), ("latent_image", ("6", "LATENT"))):
        g.connect(*src, "8", name)
    for nid, latent in (("9", "8"), ("11", "10")):
        g.add_node("VAEDecode", {}, id=nid)
        g.connect(latent, "LATENT", nid, "samples")
        g.connect("1", "VAE", nid, "vae")
    result = session.run(g, outputs=["1", "9", "11", "8", "10"], validate=False)
    sampled = result.output("8")["samples"]
    assert torch.isfinite(sampled).all()
    assert torch.equal(sampled, result.output("10")["samples"])
    # equal latents in two memory layouts (VAE Encode gives a channels-last one): the decoder's summation
    # order may differ, so the pictures agree within its float32 rounding bound (tests/numerics.py)
    vae = result.output("1", "VAE")
    ours, reference = result.output("9"), result.output("11")
    assert torch.isfinite(ours).all()
    assert float((ours - reference).norm() / reference.norm()) <= path_rtol(vae.model)
