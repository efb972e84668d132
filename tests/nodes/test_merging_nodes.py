"""ModelMerge* / CLIPMerge* on tiny checkpoints: the stated arithmetic on every weight while the merged
value is in use, nothing copied or changed outside that, the second model's own patches counted.

Tolerance: each merged weight is computed as a·W1 + b·W2 in float32, the same operations in the same
order as the expected value written here, so they agree to the last bit but for fused multiply-adds
the CPU may use; 1e-6 absolute on weights of order 0.1 is a few ulps."""
from __future__ import annotations

import pytest
import torch
from nodekit import FakeContext, options_for

from nodegraph import NodeError
from nodes.loaders import checkpoint_loader_simple, lora_loader
from nodes.merging import (clip_merge_add, clip_merge_simple, clip_merge_subtract, model_merge_add, model_merge_blocks,
                           model_merge_simple, model_merge_subtract)
from nodes.sd.testing import write_random_checkpoint, write_random_lora


@pytest.fixture
def ctx(models_dir, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "loras").mkdir()
    write_random_checkpoint(tmp_path / "checkpoints" / "other-sd1.safetensors", "sd1", seed=5)
    write_random_lora(tmp_path / "loras" / "style.safetensors", "sd1", seed=1, scale=0.3)
    options = options_for(models_dir)
    options.models_dirs = (tmp_path, models_dir)
    return FakeContext(options)


@pytest.fixture
def pair(load, ctx):
    """(model, clip) of the tiny sd1 checkpoint and of another sd1 checkpoint with other weights."""
    first = load("sd1")
    second = checkpoint_loader_simple(ckpt_name="other-sd1.safetensors", ctx=ctx)
    return first, second


def unet_weights(model) -> dict[str, torch.Tensor]:
    with model.in_use():
        return {k: v.detach().clone() for k, v in model.unet.named_parameters()}


def clip_weights(clip) -> dict[str, torch.Tensor]:
    from nodes.sd.merging import weights_in_use

    with weights_in_use(clip):
        return {f"{s}:{k}": v.detach().clone() for s, m in clip.models.items() for k, v in m.named_parameters()}


def assert_each(merged: dict, a: dict, b: dict, fn) -> None:
    assert merged.keys() == a.keys()
    for key in merged:
        torch.testing.assert_close(merged[key], fn(key, a[key], b[key]), rtol=0, atol=1e-6, msg=key)


def test_model_merge_simple_is_ratio_first_plus_the_rest_second(pair, ctx):
    (m1, _, _), (m2, _, _) = pair
    w1, w2 = unet_weights(m1), unet_weights(m2)
    merged = model_merge_simple(model1=m1, model2=m2, ratio=0.3, ctx=ctx)
    assert merged.unet is m1.unet  # no copy: patches over the shared U-Net
    assert_each(unet_weights(merged), w1, w2, lambda _k, a, b: a * 0.3 + (1 - 0.3) * b)
    assert all(torch.equal(v, w1[k]) for k, v in m1.unet.named_parameters())  # restored after use
    assert all(torch.equal(v, w2[k]) for k, v in m2.unet.named_parameters())


def test_model_merge_blocks_takes_the_ratio_of_the_block_a_weight_is_in(pair, ctx):
    (m1, _, _), (m2, _, _) = pair
    w1, w2 = unet_weights(m1), unet_weights(m2)
    merged = model_merge_blocks(model1=m1, model2=m2, input=0.2, middle=0.5, out=0.9, ctx=ctx)

    def expected(key, a, b):  # ComfyUI: longest matching name; "out" covers output_blocks and out.*
        ratio = 0.5 if key.startswith("middle") else 0.9 if key.startswith("out") else 0.2
        return a * ratio + (1 - ratio) * b

    assert_each(unet_weights(merged), w1, w2, expected)
    assert any(k.startswith("time_embed") for k in w1) and any(k.startswith("out.") for k in w1)


def test_model_merge_subtract_and_add(pair, ctx):
    (m1, _, _), (m2, _, _) = pair
    w1, w2 = unet_weights(m1), unet_weights(m2)
    diff = model_merge_subtract(model1=m1, model2=m2, multiplier=1.5, ctx=ctx)
    assert_each(unet_weights(diff), w1, w2, lambda _k, a, b: a * 1.5 + (-1.5) * b)
    total = model_merge_add(model1=m1, model2=m2, ctx=ctx)
    assert_each(unet_weights(total), w1, w2, lambda _k, a, b: a + b)


def test_the_second_model_counts_with_its_own_patches(pair, ctx):
    """Subtracting the base from the base with a LoRA (one shared U-Net) leaves the LoRA's change."""
    (base, clip, _), _ = pair
    tuned, _ = lora_loader(model=base, clip=clip, lora_name="style.safetensors", strength_model=1.0,
                           strength_clip=0.0, ctx=ctx)
    w_base, w_tuned = unet_weights(base), unet_weights(tuned)
    diff = model_merge_subtract(model1=tuned, model2=base, multiplier=1.0, ctx=ctx)
    assert_each(unet_weights(diff), w_tuned, w_base, lambda _k, a, b: a * 1.0 + (-1.0) * b)
    back = model_merge_add(model1=base, model2=diff, ctx=ctx)  # add-difference: base + (tuned − base)
    merged = unet_weights(back)
    for key in merged:  # two float32 roundings of values of order 0.1
        torch.testing.assert_close(merged[key], w_tuned[key], rtol=0, atol=2e-7 * 8, msg=key)


def test_merging_models_of_two_families_is_an_error_naming_the_node(load, pair, ctx):
    (m1, _, _), _ = pair
    sdxl, _, _ = load("sdxl")
    with pytest.raises(NodeError, match=r"node 1 \(ModelMergeSimple\): the second model is sdxl, the first sd1"):
        model_merge_simple(model1=m1, model2=sdxl, ratio=0.5, ctx=ctx)


def test_clip_merges_follow_the_same_arithmetic_per_encoder(pair, ctx):
    (_, c1, _), (_, c2, _) = pair
    w1, w2 = clip_weights(c1), clip_weights(c2)
    simple = clip_merge_simple(clip1=c1, clip2=c2, ratio=0.25, ctx=ctx)
    assert simple.models == c1.models
    assert_each(clip_weights(simple), w1, w2, lambda _k, a, b: a * 0.25 + (1 - 0.25) * b)
    assert_each(clip_weights(clip_merge_subtract(clip1=c1, clip2=c2, multiplier=-2.0, ctx=ctx)), w1, w2,
                lambda _k, a, b: a * -2.0 + 2.0 * b)
    assert_each(clip_weights(clip_merge_add(clip1=c1, clip2=c2, ctx=ctx)), w1, w2, lambda _k, a, b: a + b)
    before = c1.encode("a red fox")[0]
    assert (simple.encode("a red fox")[0] - before).abs().max() > 1e-3
    torch.testing.assert_close(c1.encode("a red fox")[0], before, rtol=0, atol=0)


def test_model_merge_sd1_runs_in_a_graph_with_one_ratio_per_block_and_is_cached(session, out_dir):
    from nodegraph import Graph

    graph = Graph()
    graph.add_node("CheckpointLoaderSimple", {"ckpt_name": "sd1.safetensors"}, id="1")
    ratios = {"time_embed.": 0.3, "input_blocks.1.": 0.6, "out.": 0.0}
    graph.add_node("ModelMergeSD1", ratios, id="3")
    graph.connect("1", "MODEL", "3", "model1")
    graph.connect("1", "MODEL", "3", "model2")  # the model with itself: every weight stays as it is
    graph.add_node("CheckpointSave", {"filename_prefix": "checkpoints/merged"}, id="4")
    graph.connect("3", "MODEL", "4", "model")
    graph.connect("1", "CLIP", "4", "clip")
    graph.connect("1", "VAE", "4", "vae")
    result = session.run(graph, outputs=["3", "4"])
    merged = result.output("3")
    spec = session.registry.get("ModelMergeSD1")
    assert [p.name for p in spec.params][:3] == ["time_embed.", "label_emb.", "input_blocks.0."]
    ratio = {p.key: p.strength_model for p in merged.patches.weights}
    def of(prefix):
        found = {v for k, v in ratio.items() if k.startswith(prefix)}
        assert found, prefix
        return found

    assert of("time_embed.") == {0.3} and of("input_blocks.1.") == {0.6} and of("out.") == {0.0}
    assert of("input_blocks.0.") == of("input_blocks.2.") == of("middle_block.") == {1.0}
    assert ratio["output_blocks.0.0.in_layers.2.weight"] == 1.0  # "output_blocks.0." is longer than "out."
    assert sorted(p.name for p in (out_dir / "checkpoints").iterdir()) == ["merged_00001_.safetensors"]
    again = session.run(graph, outputs=["3", "4"])
    assert "3" not in again.stats.executed and "4" not in again.stats.executed  # cached: nothing rewritten
    assert sorted(p.name for p in (out_dir / "checkpoints").iterdir()) == ["merged_00001_.safetensors"]
