"""LoraLoader / LoraLoaderModelOnly on the tiny checkpoints: copies that carry the LoRA, the loaded
model left as it was, and clear errors for a LoRA of another family."""
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
    with torch.no_grad():
        return model.apply_model(x, torch.tensor([5.0]), context)


def test_lora_loader_returns_patched_copies_and_leaves_the_loaded_model_alone(load, ctx):
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
    base = dict(model.unet.named_parameters())[name]
    torch.testing.assert_close(dict(half.unet.named_parameters())[name] - base,
                               (dict(one.unet.named_parameters())[name] - base) / 2, rtol=1e-4, atol=1e-6)


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


def test_moving_the_lora_copy_never_moves_the_loaded_models_weights(load, ctx):
    """Module.to swaps each Parameter's data in place: a copy sharing Parameter objects would drag the
    loaded model along (and a memory manager offloading one would break the other)."""
    model, clip, _ = load("sd1")
    patched, _ = lora_loader(model=model, clip=clip, lora_name="style.safetensors", strength_model=1.0,
                             strength_clip=0.0, ctx=ctx)
    patched.unet.to(torch.float64)  # stands in for a device move, which this machine cannot do
    assert {p.dtype for p in model.unet.parameters()} == {torch.float32}
    assert {p.dtype for p in patched.unet.parameters()} == {torch.float64}
