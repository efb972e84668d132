"""LoraLoader / LoraLoaderModelOnly on the tiny checkpoints: values sharing the loaded weights that
carry the LoRA as weight patches (applied while the value runs), the loaded model left as it was,
and clear errors for a LoRA of another family."""
from __future__ import annotations

import pytest
import torch
from nodekit import FakeContext, options_for

from nodes.loaders import lora_loader, lora_loader_model_only
from nodes.sd.lora import LoraError
from nodes.sd.testing import write_random_lora


@pytest.fixture
def ctx(models_dir, tmp_path):
    (tmp_path / "loras").mkdir()
    write_random_lora(tmp_path / "loras" / "style.safetensors", "sd1", seed=1, scale=0.3)
    options = options_for(models_dir)
    options.models_dirs = (tmp_path, models_dir)
    return FakeContext(options)


def unet_out(model) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    cfg = model.unet.config
    x = torch.randn(1, 4, 8, 8, generator=g)
    context = torch.randn(1, 77, cfg.context_dim, generator=g)
    with torch.no_grad(), model.in_use():  # as a sampler runs it: its weight patches applied
        return model.apply_model(x, torch.tensor([5.0]), context)


def weight_in_use(model, name: str) -> torch.Tensor:
    with model.in_use():
        return model.unet.get_parameter(name).detach().clone()


def test_lora_loader_returns_patched_values_and_leaves_the_loaded_model_alone(load, ctx):
    model, clip, _ = load("sd1")
    before_unet = {k: v.clone() for k, v in model.unet.state_dict().items()}
    before_out, before_text = unet_out(model), clip.encode("a red fox")[0]
    new_model, new_clip = lora_loader(model=model, clip=clip, lora_name="style.safetensors", strength_model=1.0,
                                      strength_clip=1.0, ctx=ctx)
    assert new_model is not model and new_clip is not clip
    assert (unet_out(new_model) - before_out).abs().max() > 1e-3
    assert (new_clip.encode("a red fox")[0] - before_text).abs().max() > 1e-3
    assert all(torch.equal(before_unet[k], v) for k, v in model.unet.state_dict().items())
    torch.testing.assert_close(unet_out(model), before_out, rtol=0, atol=0)
    torch.testing.assert_close(clip.encode("a red fox")[0], before_text, rtol=0, atol=0)
    assert ctx.ui["lora"]["applied"] == ctx.ui["lora"]["layers"] > 0


def test_strength_scales_the_change_and_zero_is_the_model_itself(load, ctx):
    model, clip, _ = load("sd1")
    same = lora_loader(model=model, clip=clip, lora_name="style.safetensors", strength_model=0.0,
                       strength_clip=0.0, ctx=ctx)
    assert same[0] is model and same[1] is clip
    one = lora_loader(model=model, clip=clip, lora_name="style.safetensors", strength_model=1.0, strength_clip=0.0,
                      ctx=ctx)[0]
    half = lora_loader(model=model, clip=clip, lora_name="style.safetensors", strength_model=0.5, strength_clip=0.0,
                       ctx=ctx)[0]
    name = "input_blocks.0.0.weight"
    base = weight_in_use(model, name)
    torch.testing.assert_close(weight_in_use(half, name) - base, (weight_in_use(one, name) - base) / 2,
                               rtol=1e-4, atol=1e-6)


def test_model_only_leaves_the_text_encoder_layers_out(load, ctx):
    model, _, _ = load("sd1")
    patched = lora_loader_model_only(model=model, lora_name="style.safetensors", strength_model=1.0, ctx=ctx)
    assert patched is not model
    assert 0 < ctx.ui["lora"]["applied"] < ctx.ui["lora"]["layers"]


def test_a_lora_for_another_family_is_an_error_naming_the_file(load, ctx):
    model, clip, _ = load("sdxl")
    with pytest.raises(LoraError, match=r"style\.safetensors: .*made for another model family"):
        lora_loader(model=model, clip=clip, lora_name="style.safetensors", strength_model=1.0, strength_clip=1.0,
                    ctx=ctx)


def test_a_lycoris_file_applies_through_the_node(load, ctx, tmp_path):
    from safetensors.torch import save_file

    key = "lora_unet_conv_in"
    g = torch.Generator().manual_seed(3)
    save_file({key + ".hada_w1_a": torch.randn(32, 2, generator=g), key + ".hada_w1_b": torch.randn(2, 36, generator=g),
               key + ".hada_w2_a": torch.randn(32, 2, generator=g), key + ".hada_w2_b": torch.randn(2, 36, generator=g),
               key + ".alpha": torch.tensor(1.0)}, str(tmp_path / "loras" / "loha.safetensors"))
    model, clip, _ = load("sd1")
    patched = lora_loader_model_only(model=model, lora_name="loha.safetensors", strength_model=1.0, ctx=ctx)
    assert ctx.ui["lora"] == {"file": str(tmp_path / "loras" / "loha.safetensors"), "layers": 1, "applied": 1}
    assert (unet_out(patched) - unet_out(model)).abs().max() > 1e-3


def test_a_file_of_a_family_nodegraph_does_not_apply_is_one_clear_error(load, ctx, tmp_path):
    from safetensors.torch import save_file

    save_file({f"lora_unet_input_blocks_{i}_0_in_layers_2.oft_blocks": torch.zeros(4, 8, 8) for i in range(1, 4)},
              str(tmp_path / "loras" / "oft.safetensors"))
    model, clip, _ = load("sd1")
    with pytest.raises(LoraError, match=r"oft\.safetensors: OFT layers, a LoRA family NodeGraph does not apply"):
        lora_loader(model=model, clip=clip, lora_name="oft.safetensors", strength_model=1.0, strength_clip=1.0,
                    ctx=ctx)


def test_layers_that_fit_nothing_are_named_in_the_log_and_the_rest_applies(load, ctx, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tmp_path / "loras" / "style.safetensors"))
    tensors["lora_unet_no_such_block.lora_down.weight"] = torch.zeros(4, 8)
    tensors["lora_unet_no_such_block.lora_up.weight"] = torch.zeros(8, 4)
    save_file(tensors, str(tmp_path / "loras" / "extra.safetensors"))
    model, clip, _ = load("sd1")
    with caplog.at_level("WARNING"):
        lora_loader(model=model, clip=clip, lora_name="extra.safetensors", strength_model=1.0, strength_clip=1.0,
                    ctx=ctx)
    assert ctx.ui["lora"]["applied"] == ctx.ui["lora"]["layers"] - 1
    assert "1 of the LoRA's" in caplog.text and "lora_unet_no_such_block" in caplog.text


def test_the_lora_value_shares_the_loaded_weights_and_copies_nothing(load, ctx):
    model, clip, _ = load("sd1")
    patched, patched_clip = lora_loader(model=model, clip=clip, lora_name="style.safetensors", strength_model=1.0,
                                        strength_clip=1.0, ctx=ctx)
    assert patched.unet is model.unet and patched_clip.models == clip.models
    assert len(patched.patches.weights) == ctx.ui["lora"]["layers"] - len(patched_clip.weight_patches) > 0


def test_two_loras_stack_as_their_patches_in_order(load, ctx, tmp_path):
    write_random_lora(tmp_path / "loras" / "second.safetensors", "sd1", seed=2, scale=0.3)
    model, clip, _ = load("sd1")
    first = lora_loader_model_only(model=model, lora_name="style.safetensors", strength_model=0.7, ctx=ctx)
    both = lora_loader_model_only(model=first, lora_name="second.safetensors", strength_model=0.4, ctx=ctx)
    second = lora_loader_model_only(model=model, lora_name="second.safetensors", strength_model=0.4, ctx=ctx)
    def keys(m):
        return [(p.module, p.key, p.strength) for p in m.patches.weights]

    assert keys(both) == keys(first) + keys(second)
    name = "input_blocks.0.0.weight"
    base = weight_in_use(model, name)
    # additive LoRAs: the deltas add up (float32 sums in another order: a few ulps of the weight)
    torch.testing.assert_close(weight_in_use(both, name) - base,
                               (weight_in_use(first, name) - base) + (weight_in_use(second, name) - base),
                               rtol=1e-5, atol=1e-6)


def test_on_sdxl_the_patches_give_the_weights_of_the_merged_copy_including_openclip_qkv_thirds(load, ctx, tmp_path):
    """The patch path (Load LoRA) against the merged-copy path (nodes/sd/lora/apply.py, held to
    transformers/diffusers in tests/sd/test_lora.py), on SDXL's CLIP-L and OpenCLIP-G (whose q/k/v
    LoRA layers land on thirds of one in_proj weight). Same float32 sums in another order: 1e-6."""
    from nodes.sd.lora import apply_to_model, apply_to_text_encoder, read_lora
    from nodes.sd.merging import weights_in_use

    path = write_random_lora(tmp_path / "loras" / "xl.safetensors", "sdxl", seed=4, scale=0.3)
    model, clip, _ = load("sdxl")
    patched, patched_clip = lora_loader(model=model, clip=clip, lora_name="xl.safetensors", strength_model=0.6,
                                        strength_clip=0.9, ctx=ctx)
    lora = read_lora(path)
    copy_model, _ = apply_to_model(model, lora, 0.6, path)
    copy_clip, _ = apply_to_text_encoder(clip, lora, 0.9, path)
    with weights_in_use(patched, patched_clip):
        for mine, theirs in ((patched.unet, copy_model.unet), *((patched_clip.models[s], copy_clip.models[s])
                                                                 for s in ("l", "g"))):
            want = dict(theirs.named_parameters())
            for key, value in mine.named_parameters():
                torch.testing.assert_close(value, want[key], rtol=0, atol=1e-6, msg=key)
    assert any(p.rows for p in patched_clip.weight_patches)
