"""ControlNet nodes on the tiny checkpoints: loading each kind of file, difference ControlNets, applying
and chaining, the union type, and clear errors for a ControlNet of another family."""
from __future__ import annotations

import pytest
import torch
from nodekit import FakeContext, options_for

from nodes.controlnet import (controlnet_apply_advanced, controlnet_loader, diff_controlnet_loader,
                              set_union_controlnet_type)
from nodes.sd.control import ControlError
from nodes.sd.control.testing import random_control_lora, unet_config_for, write_random_adapter, write_random_controlnet
from nodes.sd.testing import save_safetensors


@pytest.fixture(scope="module")
def control_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cn")
    folder = root / "controlnet"
    folder.mkdir()
    write_random_controlnet(folder / "canny.safetensors", "sd1", seed=1)
    write_random_controlnet(folder / "canny_xl.safetensors", "sdxl", seed=2)
    write_random_controlnet(folder / "diff.safetensors", "sd1", seed=3, prefix="control_model.",
                            extra={"difference": torch.tensor([])})
    write_random_adapter(folder / "t2i_depth.safetensors", "sd1")
    save_safetensors(folder / "control-lora-canny.safetensors", random_control_lora(unet_config_for("sdxl"), seed=4))
    return root


@pytest.fixture
def ctx(models_dir, control_dir):
    options = options_for(models_dir)
    options.models_dirs = (control_dir, models_dir)
    return FakeContext(options)


@pytest.mark.parametrize("name, kind", [("canny.safetensors", "ControlNet"), ("t2i_depth.safetensors", "T2I-Adapter"),
                                        ("control-lora-canny.safetensors", "Control-LoRA")])
def test_the_loader_tells_the_kind_of_file_from_its_keys(ctx, name, kind):
    loaded = controlnet_loader(control_net_name=name, ctx=ctx)
    assert loaded.describe() == kind and ctx.ui["control_net"]["kind"] == kind
    assert controlnet_loader(control_net_name=name, ctx=ctx) is loaded  # loaded once


def test_a_difference_controlnet_gets_the_models_weights_added(load, ctx, control_dir):
    from safetensors.torch import load_file

    model = load("sd1")[0]
    with pytest.raises(ControlError, match="DiffControlNetLoader"):
        controlnet_loader(control_net_name="diff.safetensors", ctx=ctx)
    loaded = diff_controlnet_loader(model=model, control_net_name="diff.safetensors", ctx=ctx)
    stored = load_file(str(control_dir / "controlnet" / "diff.safetensors"))
    name = "input_blocks.1.0.in_layers.2.weight"
    got = dict(loaded.module.named_parameters())[name]
    want = stored["control_model." + name] + dict(model.unet.named_parameters())[name]
    torch.testing.assert_close(got, want)
    assert dict(loaded.module.named_parameters())["zero_convs.0.0.weight"].equal(stored["control_model.zero_convs.0.0.weight"])


def test_apply_advanced_puts_one_shared_control_on_both_prompts_and_chains(ctx):
    net = controlnet_loader(control_net_name="canny.safetensors", ctx=ctx)
    image = torch.rand(1, 32, 32, 3)
    positive, negative = [[torch.zeros(1, 77, 32), {}]], [[torch.ones(1, 77, 32), {}]]
    pos1, neg1 = controlnet_apply_advanced(positive, negative, net, image, 0.6, 0.1, 0.9)
    first = pos1[0][1]["control"]
    assert neg1[0][1]["control"] is first and positive[0][1] == {}
    assert (first.strength, first.percent, first.previous) == (0.6, (0.1, 0.9), None)
    torch.testing.assert_close(first.hint, image.movedim(-1, 1))
    pos2, neg2 = controlnet_apply_advanced(pos1, neg1, net, image, 1.0, 0.0, 1.0)
    assert pos2[0][1]["control"].previous is first and pos2[0][1]["control"].chain()[0] is first
    same = controlnet_apply_advanced(positive, negative, net, image, 0.0, 0.0, 1.0)
    assert same[0] is positive and same[1] is negative


def test_set_union_type_gives_a_copy_with_the_type(ctx):
    net = controlnet_loader(control_net_name="canny.safetensors", ctx=ctx)
    typed = set_union_controlnet_type(control_net=net, type="depth")
    assert typed.extra == {"control_type": [1]} and typed.module is net.module and net.extra == {}
    assert set_union_controlnet_type(control_net=net, type="auto").extra == {"control_type": []}


def test_sampling_with_an_sdxl_controlnet_on_an_sd1_model_names_both(load, ctx):
    from nodes.sampling import ksampler

    model, clip, _ = load("sd1")
    net = controlnet_loader(control_net_name="canny_xl.safetensors", ctx=ctx)
    cond = [[clip.encode("a fox")[0], {}]]
    positive, negative = controlnet_apply_advanced(cond, cond, net, torch.rand(1, 64, 64, 3), 1.0, 0.0, 1.0)
    with pytest.raises(ControlError, match=r"canny_xl\.safetensors: a SDXL ControlNet, but the model is SD1\.x"):
        ksampler(model=model, positive=positive, negative=negative, latent_image={"samples": torch.zeros(1, 4, 8, 8)},
                 seed=1, steps=1, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0, ctx=ctx)


@pytest.mark.parametrize("name, family", [("canny.safetensors", "sd1"), ("t2i_depth.safetensors", "sd1"),
                                          ("control-lora-canny.safetensors", "sdxl")])
def test_ksampler_with_a_control_differs_from_without_and_is_deterministic(load, ctx, name, family):
    from nodes.sampling import ksampler

    model, clip, _ = load(family)
    net = controlnet_loader(control_net_name=name, ctx=ctx)
    context, pooled = clip.encode("a fox")
    cond = [[context, {} if pooled is None else {"pooled_output": pooled}]]
    positive, negative = controlnet_apply_advanced(cond, cond, net, torch.rand(1, 64, 64, 3), 1.0, 0.0, 1.0)
    args = dict(model=model, negative=negative, latent_image={"samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=2,
                cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0, ctx=ctx)
    with_control = ksampler(positive=positive, **args)["samples"]
    assert torch.equal(with_control, ksampler(positive=positive, **args)["samples"])
    args["negative"] = cond
    assert (with_control - ksampler(positive=cond, **args)["samples"]).abs().max() > 1e-3
