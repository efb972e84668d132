"""CLIPTextEncodeSDXL and CLIPTextEncodeSDXLRefiner on tiny random SDXL checkpoints: each encoder gets its
own text (checked against CLIP Text Encode's encoding of that text), and the size / crop / target /
aesthetic numbers reach the U-Net's ``y`` as SDXL's embedding of them."""
from __future__ import annotations

import pytest
import torch
from nodekit import FakeContext, options_for

from nodes.conditioning import clip_text_encode, clip_text_encode_sdxl, clip_text_encode_sdxl_refiner
from nodes.sd.guidance import resolve_entries, parse_conditioning
from nodes.sd.unet import sdxl_adm, sdxl_refiner_adm

SIZES = dict(width=1024, height=768, crop_w=16, crop_h=32, target_width=2048, target_height=1536)


@pytest.fixture(scope="module")
def refiner(tmp_path_factory):
    """(MODEL, CLIP) of a tiny random SDXL refiner checkpoint."""
    from nodes.loaders import checkpoint_loader_simple
    from nodes.sd.testing import write_random_checkpoint

    root = tmp_path_factory.mktemp("refiner")
    (root / "checkpoints").mkdir()
    write_random_checkpoint(root / "checkpoints" / "refiner.safetensors", "sdxl_refiner", seed=3)
    model, clip, _ = checkpoint_loader_simple(ckpt_name="refiner.safetensors", ctx=FakeContext(options_for(root)))
    return model, clip


def y_of(model, conditioning) -> torch.Tensor:
    """The ``y`` the sampler's guidance gives the U-Net for the first entry, at a 64×64 latent."""
    entries = resolve_entries(parse_conditioning(conditioning, "positive"), model, (1, 4, 64, 64),
                              torch.device("cpu"), "positive")
    return entries[0].y


def test_each_sdxl_encoder_gets_its_own_text(load, models_dir):
    _, clip, _ = load("sdxl")
    ctx = FakeContext(options_for(models_dir))
    cond = clip_text_encode_sdxl(clip=clip, **SIZES, text_g="a red fox", text_l="snowy forest", ctx=ctx)
    of_g = clip_text_encode(clip=clip, text="a red fox", ctx=ctx)[0]
    of_l = clip_text_encode(clip=clip, text="snowy forest", ctx=ctx)[0]
    width_l = clip.models["l"].config.width
    context, options = cond[0]
    torch.testing.assert_close(context[..., :width_l], of_l[0][..., :width_l], rtol=0, atol=0)
    torch.testing.assert_close(context[..., width_l:], of_g[0][..., width_l:], rtol=0, atol=0)
    torch.testing.assert_close(options["pooled_output"], of_g[1]["pooled_output"], rtol=0, atol=0)
    assert {k: options[k] for k in SIZES} == SIZES


def test_the_same_text_for_both_encoders_is_clip_text_encode(load, models_dir):
    _, clip, _ = load("sdxl")
    ctx = FakeContext(options_for(models_dir))
    both = clip_text_encode_sdxl(clip=clip, **SIZES, text_g="a fox", text_l="a fox", ctx=ctx)[0][0]
    torch.testing.assert_close(both, clip_text_encode(clip=clip, text="a fox", ctx=ctx)[0][0], rtol=0, atol=0)


def test_the_shorter_sdxl_prompt_is_padded_with_empty_windows(load, models_dir):
    _, clip, _ = load("sdxl")
    ctx = FakeContext(options_for(models_dir))
    long_text = " ".join(["fox"] * 100)
    context = clip_text_encode_sdxl(clip=clip, **SIZES, text_g="a fox", text_l=long_text, ctx=ctx)[0][0]
    width_l = clip.models["l"].config.width
    assert context.shape[1] == 154
    g_alone = clip_text_encode(clip=clip, text="a fox", ctx=ctx)[0][0][..., width_l:]
    g_empty = clip_text_encode(clip=clip, text="", ctx=ctx)[0][0][..., width_l:]
    torch.testing.assert_close(context[:, :77, width_l:], g_alone, rtol=0, atol=0)
    torch.testing.assert_close(context[:, 77:, width_l:], g_empty, rtol=0, atol=0)


def test_sdxl_sizes_reach_the_unets_y(load, models_dir):
    model, clip, _ = load("sdxl")
    cond = clip_text_encode_sdxl(clip=clip, **SIZES, text_g="a fox", text_l="a fox",
                                 ctx=FakeContext(options_for(models_dir)))
    expected = sdxl_adm(cond[0][1]["pooled_output"], 1024, 768, 16, 32, 2048, 1536)
    torch.testing.assert_close(y_of(model, cond), expected, rtol=0, atol=0)


def test_clip_text_encode_sdxl_refuses_a_clip_without_both_encoders(load, models_dir):
    _, clip, _ = load("sd1")
    with pytest.raises(ValueError, match="needs the CLIP of an SDXL base checkpoint.*this CLIP has l"):
        clip_text_encode_sdxl(clip=clip, **SIZES, text_g="a", text_l="b", ctx=FakeContext(options_for(models_dir)))


def test_refiner_encode_sets_the_aesthetic_score_and_size(refiner, models_dir):
    model, clip = refiner
    ctx = FakeContext(options_for(models_dir))
    cond = clip_text_encode_sdxl_refiner(clip=clip, ascore=2.5, width=896, height=640, text="a fox", ctx=ctx)
    plain = clip_text_encode(clip=clip, text="a fox", ctx=ctx)
    torch.testing.assert_close(cond[0][0], plain[0][0], rtol=0, atol=0)
    assert (cond[0][1]["aesthetic_score"], cond[0][1]["width"], cond[0][1]["height"]) == (2.5, 896, 640)
    expected = sdxl_refiner_adm(cond[0][1]["pooled_output"], 896, 640, 0, 0, 2.5)
    torch.testing.assert_close(y_of(model, cond), expected, rtol=0, atol=0)
