"""LoRA (kohya/A1111 format) on our U-Net and text encoders equals the same LoRA merged into diffusers'
and transformers' models by their own module names.

The reference side never uses our name mapping: a kohya layer name is the reference model's module
path with ``_`` for ``.``, so the test finds each reference module by that rule and adds
``strength · alpha/r · up @ down`` to its weight. Ours maps the same names onto the LDM layout.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_text_encoders import WIDTH, ids_for, ref_clip_l, ref_open_clip
from test_unet import diffusers_twin, inputs, random_unet, rel_err

from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.lora import LoraError, apply_to_model, apply_to_text_encoder, delta, unet_targets
from nodes.sd.text_encoders import build_text_encoder, text_encoder_state_dicts
from nodes.sd.unet import sdxl_adm, tiny_config

PATH = Path("test.safetensors")


def random_lora(modules: dict[str, torch.nn.Module], prefix: str, seed: int, rank: int = 4) -> dict[str, torch.Tensor]:
    """A kohya LoRA over every Linear/Conv2d in ``modules`` (path → module), named after the paths."""
    g = torch.Generator().manual_seed(seed)
    lora = {}
    for path, module in modules.items():
        if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        key = prefix + path.replace(".", "_")
        if isinstance(module, torch.nn.Conv2d):
            down = torch.randn(rank, module.in_channels, *module.kernel_size, generator=g) * 0.1
            up = torch.randn(module.out_channels, rank, 1, 1, generator=g) * 0.1
        else:
            down = torch.randn(rank, module.in_features, generator=g) * 0.1
            up = torch.randn(module.out_features, rank, generator=g) * 0.1
        lora[key + ".lora_down.weight"], lora[key + ".lora_up.weight"] = down, up
        lora[key + ".alpha"] = torch.tensor(float(rank) / 2)
    return lora


def hf_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """A transformers CLIP model's modules by the paths kohya names spell: under ``text_model.``
    (transformers ≥ 5.6 dropped that level from CLIPTextModel), without the text projection (which
    LoRA trainers leave alone)."""
    return {"text_model." + path.removeprefix("text_model."): m for path, m in model.named_modules()
            if path and "projection" not in path}


@torch.no_grad()
def merge_by_name(modules: dict[str, torch.nn.Module], lora: dict[str, torch.Tensor], prefix: str,
                  strength: float) -> int:
    """The reference: add each layer to the module whose path the kohya name spells."""
    by_name = {prefix + path.replace(".", "_"): m for path, m in modules.items()}
    merged = 0
    for key in [k[: -len(".lora_down.weight")] for k in lora if k.endswith(".lora_down.weight")]:
        if not key.startswith(prefix):
            continue
        module = by_name[key]
        up, down = lora[key + ".lora_up.weight"], lora[key + ".lora_down.weight"]
        scale = float(lora[key + ".alpha"]) / down.shape[0]
        module.weight += strength * scale * (up.flatten(1) @ down.flatten(1)).reshape(module.weight.shape)
        merged += 1
    return merged


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
@torch.no_grad()
def test_unet_lora_in_diffusers_names_equals_diffusers_with_the_lora_merged(family):
    unet = random_unet(tiny_config(family), seed=3)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    ref = diffusers_twin(unet)
    lora = random_lora(dict(ref.named_modules()), "lora_unet_", seed=4)
    assert merge_by_name(dict(ref.named_modules()), lora, "lora_unet_", 0.8) == len(lora) // 3
    patched, applied = apply_to_model(DiffusionModel.for_family(unet, family), lora, 0.8, PATH)
    assert sorted(applied) == sorted(k[: -len(".lora_down.weight")] for k in lora if k.endswith(".lora_down.weight"))
    x, t, context = inputs(unet.config)
    args, ref_kwargs = (), {}
    if family == "sdxl":
        pooled = torch.randn(2, 1280, generator=torch.Generator().manual_seed(5))
        args = (sdxl_adm(pooled, width=1024, height=768, crop_w=16, crop_h=48, target_width=896, target_height=1152),)
        time_ids = torch.tensor([[768.0, 1024.0, 48.0, 16.0, 1152.0, 896.0]]).repeat(2, 1)
        ref_kwargs = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}
    ref_out = ref(x, t, encoder_hidden_states=context, **ref_kwargs).sample
    ours = patched.unet(x, t, context, *args)
    assert rel_err(ours, ref_out) <= 1e-4
    # the loaded model is untouched, and unchanged tensors are shared rather than copied
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())
    original = dict(unet.named_parameters())
    changed = {unet_targets(unet, unet.config)[layer].param for layer in applied}
    for name, p in patched.unet.named_parameters():
        assert p is not original[name]  # own Parameter objects: moving one model never moves the other
        assert (p.data_ptr() == original[name].data_ptr()) == (name not in changed), name


@torch.no_grad()
def test_sdxl_lora_in_sgm_names_lands_on_the_same_weights():
    """sd-scripts writes SDXL LoRAs with the original (SGM/LDM) module paths."""
    unet = random_unet(tiny_config("sdxl"), seed=6)
    ref = diffusers_twin(unet)
    diffusers_names = random_lora(dict(ref.named_modules()), "lora_unet_", seed=7)
    a, _ = apply_to_model(DiffusionModel.for_family(unet, "sdxl"), diffusers_names, 1.0, PATH)
    # the same tensors under our (LDM) names, found by matching the merged weights
    ldm_names = random_lora(dict(unet.named_modules()), "lora_unet_", seed=8)
    b, applied = apply_to_model(DiffusionModel.for_family(unet, "sdxl"), ldm_names, 1.0, PATH)
    assert len(applied) == len(ldm_names) // 3
    for name, param in b.unet.named_parameters():
        key = "lora_unet_" + name[: -len(".weight")].replace(".", "_")
        if key + ".lora_down.weight" in ldm_names:
            want = dict(unet.named_parameters())[name] + delta(ldm_names, key, param.shape, PATH)
            torch.testing.assert_close(param, want, rtol=0, atol=1e-6)
    assert a.unet is not b.unet


@torch.no_grad()
def test_clip_l_lora_equals_transformers_with_the_lora_merged():
    sd = text_encoder_state_dicts("sd1", width=WIDTH, seed=9)
    enc, ref = build_text_encoder("sd1", sd), ref_clip_l(sd)
    lora = random_lora(hf_modules(ref), "lora_te_", seed=10)
    merge_by_name(hf_modules(ref), lora, "lora_te_", 0.7)
    patched, applied = apply_to_text_encoder(enc, lora, 0.7, PATH)
    assert len(applied) == len(lora) // 3
    ids = ids_for(pad=49407)
    hidden, pooled = patched.models["l"](ids, None, True, "plain")
    out = ref(ids)
    assert rel_err(hidden, out.last_hidden_state) <= 1e-4 and rel_err(pooled, out.pooler_output) <= 1e-4
    unpatched, _ = enc.models["l"](ids, None, True, "plain")
    assert rel_err(unpatched, out.last_hidden_state) > 1e-2  # the LoRA mattered; the original is as it was


@torch.no_grad()
def test_sdxl_bigg_lora_lands_on_the_thirds_of_in_proj_and_equals_transformers():
    sd = text_encoder_state_dicts("sdxl", width=WIDTH, seed=11)
    enc = build_text_encoder("sdxl", sd)
    ref_l, ref_g = ref_clip_l(sd), ref_open_clip(sd, "conditioner.embedders.1.model.", "open_clip_bigg")
    lora = random_lora(hf_modules(ref_l), "lora_te1_", seed=12) | random_lora(hf_modules(ref_g), "lora_te2_", seed=13)
    merged_l = merge_by_name(hf_modules(ref_l), lora, "lora_te1_", 1.2)
    assert merged_l == merge_by_name(hf_modules(ref_g), lora, "lora_te2_", 1.2) > 0
    patched, applied = apply_to_text_encoder(enc, lora, 1.2, PATH)
    assert len(applied) == len(lora) // 3
    ids = ids_for(pad=0)
    out = ref_g(ids, output_hidden_states=True)
    hidden, pooled = patched.models["g"](ids, -2, False, "projected")
    assert rel_err(hidden, out.hidden_states[-2]) <= 1e-4 and rel_err(pooled, out.text_embeds) <= 1e-4
    hidden_l, _ = patched.models["l"](ids_for(pad=49407), -2, False, None)
    assert rel_err(hidden_l, ref_l(ids_for(pad=49407), output_hidden_states=True).hidden_states[-2]) <= 1e-4


def test_a_layer_of_another_shape_is_an_error_naming_the_file_and_layer():
    unet = random_unet(tiny_config("sd1"), seed=1)
    key = "lora_unet_input_blocks_0_0"
    lora = {key + ".lora_down.weight": torch.zeros(2, 9, 3, 3), key + ".lora_up.weight": torch.zeros(32, 2, 1, 1)}
    with pytest.raises(LoraError, match=r"test\.safetensors: layer lora_unet_input_blocks_0_0 .* another model"):
        apply_to_model(DiffusionModel.for_family(unet, "sd1"), lora, 1.0, PATH)


def diffusers_style(lora: dict[str, torch.Tensor], peft: bool, paths: dict[str, str]) -> dict[str, torch.Tensor]:
    """A kohya LoRA renamed the way diffusers writes one (``unet.<path>.lora.down.weight``, or PEFT's
    ``lora_A``/``lora_B``; ``text_encoder.<path>``); ``paths`` turns a kohya layer back into its module path."""
    out = {}
    for key, value in lora.items():
        layer, _, part = key.partition(".")
        component, path = next((c, layer[len(p):]) for p, c in (("lora_unet_", "unet"), ("lora_te_", "text_encoder"))
                               if layer.startswith(p))
        dotted = paths[path]
        name = {"lora_down.weight": "lora_A.weight" if peft else "lora.down.weight",
                "lora_up.weight": "lora_B.weight" if peft else "lora.up.weight", "alpha": "alpha"}[part]
        out[f"{component}.{dotted}.{name}"] = value
    return out


@pytest.mark.parametrize("peft", [False, True], ids=["diffusers", "peft"])
@torch.no_grad()
def test_diffusers_and_peft_named_loras_land_where_the_kohya_names_do(peft):
    from nodes.sd.lora import kohya_names

    unet = random_unet(tiny_config("sd1"), seed=14)
    ref = diffusers_twin(unet)
    sd = text_encoder_state_dicts("sd1", width=WIDTH, seed=15)
    enc, ref_l = build_text_encoder("sd1", sd), ref_clip_l(sd)
    kohya = random_lora(dict(ref.named_modules()), "lora_unet_", seed=16)
    kohya |= random_lora(hf_modules(ref_l), "lora_te_", seed=17)
    paths = {p.replace(".", "_"): p for p in list(dict(ref.named_modules())) + list(hf_modules(ref_l))}
    renamed = kohya_names(diffusers_style(kohya, peft, paths))
    a, applied_a = apply_to_model(DiffusionModel.for_family(unet, "sd1"), kohya, 1.0, PATH)
    b, applied_b = apply_to_model(DiffusionModel.for_family(unet, "sd1"), renamed, 1.0, PATH)
    assert len(applied_a) == len(applied_b) > 0
    for (name, pa), (_, pb) in zip(a.unet.named_parameters(), b.unet.named_parameters()):
        assert torch.equal(pa, pb), name
    ta, done_a = apply_to_text_encoder(enc, kohya, 1.0, PATH)
    tb, done_b = apply_to_text_encoder(enc, renamed, 1.0, PATH)  # text_encoder.* reads as lora_te1_
    assert len(done_a) == len(done_b) > 0
    for (name, pa), (_, pb) in zip(ta.models["l"].named_parameters(), tb.models["l"].named_parameters()):
        assert torch.equal(pa, pb), name


def test_old_diffusers_attention_processor_names_are_read():
    from nodes.sd.lora import kohya_names

    t = torch.zeros(1)
    got = kohya_names({"unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight": t,
                       "unet.up_blocks.1.attentions.2.transformer_blocks.0.attn1.processor.to_k_lora.up.weight": t,
                       "text_encoder_2.text_model.encoder.layers.3.mlp.fc2.lora_B.weight": t,
                       "lora_unet_conv_in.alpha": t})
    assert set(got) == {"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_down.weight",
                        "lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_attn1_to_k.lora_up.weight",
                        "lora_te2_text_model_encoder_layers_3_mlp_fc2.lora_up.weight",
                        "lora_unet_conv_in.alpha"}
