"""Conditioning nodes: CLIPTextEncode, ConditioningCombine, ConditioningZeroOut."""
from __future__ import annotations

import pytest
import torch
from nodekit import FakeContext, options_for

from nodes.conditioning import clip_text_encode, conditioning_combine, conditioning_zero_out


def encode(load, models_dir, family: str, text: str) -> list:
    _, clip, _ = load(family)
    return clip_text_encode(clip=clip, text=text, ctx=FakeContext(options_for(models_dir)))


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_clip_text_encode_gives_the_encoders_context_and_pooled_output(load, models_dir, family):
    _, clip, _ = load(family)
    cond = encode(load, models_dir, family, "a red fox in the snow")
    context, pooled = clip.encode("a red fox in the snow")
    assert len(cond) == 1
    torch.testing.assert_close(cond[0][0], context, rtol=0, atol=0)
    torch.testing.assert_close(cond[0][1]["pooled_output"], pooled, rtol=0, atol=0)
    assert set(cond[0][1]) == {"pooled_output"}  # SDXL sizes come from the sampled latent, as in ComfyUI
    assert cond[0][0].shape[:2] == (1, 77)


def test_clip_text_encode_weights_words(load, models_dir):
    plain = encode(load, models_dir, "sd1", "a red fox")[0][0]
    weighted = encode(load, models_dir, "sd1", "a (red:1.5) fox")[0][0]
    same = encode(load, models_dir, "sd1", "a (red:1.0) fox")[0][0]
    torch.testing.assert_close(same, plain, rtol=0, atol=1e-6)
    changed = (weighted - plain).abs().amax(dim=-1)[0]
    assert changed[2] > 1e-3  # token 2 is "red" (after the start token and "a")
    assert changed[:2].max() < 1e-6


def test_long_prompts_are_encoded_in_several_windows(load, models_dir):
    cond = encode(load, models_dir, "sd1", " ".join(["fox"] * 100))
    assert cond[0][0].shape[1] == 154


def test_conditioning_combine_concatenates_the_lists_in_order(load, models_dir):
    a = encode(load, models_dir, "sd1", "a fox")
    b = encode(load, models_dir, "sd1", "a forest") + encode(load, models_dir, "sd1", "snow")
    combined = conditioning_combine(conditioning_1=a, conditioning_2=b)
    assert len(combined) == 3
    assert combined[0] is a[0] and combined[1] is b[0] and combined[2] is b[1]
    assert len(a) == 1 and len(b) == 2  # inputs untouched


def test_conditioning_zero_out_zeros_context_and_pooled_and_keeps_other_options(load, models_dir):
    cond = encode(load, models_dir, "sdxl", "a fox")
    cond[0][1] = dict(cond[0][1], width=1024, height=768)
    zeroed = conditioning_zero_out(conditioning=cond)
    context, options = zeroed[0]
    assert context.shape == cond[0][0].shape and torch.count_nonzero(context) == 0
    assert options["pooled_output"].shape == cond[0][1]["pooled_output"].shape
    assert torch.count_nonzero(options["pooled_output"]) == 0
    assert options["width"] == 1024 and options["height"] == 768
    assert torch.count_nonzero(cond[0][0]) > 0 and torch.count_nonzero(cond[0][1]["pooled_output"]) > 0


def test_conditioning_nodes_reject_values_that_are_not_conditioning():
    with pytest.raises(ValueError, match="conditioning_2 is not a CONDITIONING value"):
        conditioning_combine(conditioning_1=[], conditioning_2=torch.zeros(3))


def test_clip_text_encode_reads_embeddings_from_the_embeddings_folders_and_warns_of_missing_ones(
        load, models_dir, tmp_path, caplog):
    from safetensors.torch import save_file

    from nodes.sd.tokenizer import get_tokenizer

    _, clip, _ = load("sd1")
    table = clip.models["l"].token_embedding_weight
    (tmp_path / "embeddings").mkdir()
    save_file({"emb_params": table[get_tokenizer().ids("red fox")].clone()},
              str(tmp_path / "embeddings" / "redfox.safetensors"))
    options = options_for(models_dir)
    options.models_dirs = (tmp_path, models_dir)
    with caplog.at_level("WARNING"):
        got = clip_text_encode(clip=clip, text="a embedding:redfox in embedding:nosuch snow", ctx=FakeContext(options))
    want = encode(load, models_dir, "sd1", "a red fox in snow")
    torch.testing.assert_close(got[0][0], want[0][0], rtol=0, atol=1e-6)
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "no embedding file named nosuch" in warning and str(tmp_path / "embeddings") in warning
