"""Every LoRA family NodeGraph applies equals the `lycoris-lora` package applying the same file.

LyCORIS families (LoCon with and without Tucker, LoHa, LoKr, (IA)³, DoRA, full difference): the
package builds its network on diffusers' U-Net (the names SD1.5 LoRAs use), its weights are
randomised, the file is what it saves (its ``state_dict()``), and the reference output is diffusers'
U-Net running with the network applied at the strength as multiplier (LyCORIS's own forward, the
path its training and inference take); ours reads the same file onto the LDM U-Net.

(LyCORIS 4.1.3's ``merge_to`` scales LoHa and LoKr layers by alpha/r twice, unlike its own forward
and unlike ComfyUI; so the reference is the forward, not the merge. They agree for the other types.)

Tolerance: both sides run the same float32 U-Net on weights that differ only in the rounding of the
merge (a few ulps per weight); tests/sd/test_unet.py holds the unpatched twins to 1e-4 relative
error over the whole output, and the merge adds rounding of the same order, so 1e-4 again.

Where LyCORIS and ComfyUI mean different things (DoRA at strengths other than 1; ComfyUI is the
reference for the node's semantics), the test states the formula and checks it on one weight.
"""
from __future__ import annotations

import pytest
import torch
from test_unet import diffusers_twin, inputs, random_unet, rel_err

from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.lora import LoraError, apply_to_model, kohya_names, parse_layers, patched_weight
from nodes.sd.unet import tiny_config

lycoris = pytest.importorskip("lycoris")
from lycoris import create_lycoris  # noqa: E402
from lycoris.wrapper import LycorisNetwork  # noqa: E402

PATH = "test.safetensors"
PRESET = {"target_module": ["Linear", "Conv2d"], "lora_prefix": "lora_unet", "enable_conv": True,
          "target_name": [], "module_algo_map": {}, "name_algo_map": {}, "use_fnmatch": False, "exclude_name": []}

CASES = {
    "lora": dict(algo="lora"),
    "locon": dict(algo="locon", conv_dim=4, conv_alpha=2),
    "locon_tucker": dict(algo="locon", conv_dim=4, conv_alpha=2, use_tucker=True),
    "loha": dict(algo="loha", conv_dim=4, conv_alpha=2),
    "loha_tucker": dict(algo="loha", conv_dim=4, conv_alpha=2, use_tucker=True),
    "lokr": dict(algo="lokr", factor=4),
    "lokr_decompose_both": dict(algo="lokr", factor=8, decompose_both=True, linear_dim=1, conv_dim=1),
    "lokr_tucker": dict(algo="lokr", factor=4, conv_dim=2, use_tucker=True, decompose_both=True),
    "lokr_full_matrix": dict(algo="lokr", factor=4, full_matrix=True),
    "ia3": dict(algo="ia3"),
    "full": dict(algo="full"),
    "dora_on_out": dict(algo="lora", conv_dim=4, conv_alpha=2, dora_wd=True, wd_on_output=True),
    "dora_on_in": dict(algo="lora", conv_dim=4, conv_alpha=2, dora_wd=True, wd_on_output=False),
    "loha_dora": dict(algo="loha", conv_dim=4, conv_alpha=2, dora_wd=True),
}


def lycoris_file(ref: torch.nn.Module, case: str, seed: int) -> tuple[LycorisNetwork, dict[str, torch.Tensor]]:
    """A LyCORIS network of ``case`` over ``ref``'s Linear/Conv2d layers with random weights (as after
    training: built, applied to ``ref``, weights set), and the tensors it saves (``save_weights``
    writes its ``state_dict()``). ``ref`` then runs with the network applied."""
    LycorisNetwork.apply_preset(PRESET)
    config = dict(linear_dim=4, linear_alpha=2) | CASES[case]
    network = create_lycoris(ref, 1.0, warn_on_unmatched=False, **config)
    network.apply_to()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in network.named_parameters():
            if "dora_scale" in name:  # a magnitude near the weight's own norm, as after training
                p.mul_(1 + 0.2 * torch.rand(p.shape, generator=g))
            else:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return network, {k: v.detach().clone() for k, v in network.state_dict().items()}


# what each case must contain, so that it tests what its name says
MARKERS = {"locon_tucker": "lora_mid.weight", "loha_tucker": "hada_t1", "lokr_decompose_both": "lokr_w1_a",
           "lokr_tucker": "lokr_t2", "ia3": "on_input", "full": "diff_b", "dora_on_out": "dora_scale",
           "dora_on_in": "dora_scale", "loha_dora": "dora_scale"}


@pytest.mark.parametrize("case", sorted(CASES))
@torch.no_grad()
def test_lycoris_file_on_our_unet_equals_diffusers_running_the_lycoris_network(case):
    unet = random_unet(tiny_config("sd1"), seed=21)
    ref = diffusers_twin(unet)
    network, tensors = lycoris_file(ref, case, seed=22)
    assert any(k.endswith("." + MARKERS.get(case, "alpha")) for k in tensors)
    layers, other = parse_layers(kohya_names(tensors))
    assert not other and len(layers) == len(network.loras) > 10
    patched, applied = apply_to_model(DiffusionModel.for_family(unet, "sd1"), tensors, 1.0, PATH)
    assert sorted(applied) == sorted(layers)
    x, t, context = inputs(unet.config)
    expected = ref(x, t, encoder_hidden_states=context).sample
    assert rel_err(patched.unet(x, t, context), expected) <= 1e-4
    assert rel_err(unet(x, t, context), expected) > 1e-2  # the file changed the model


@pytest.mark.parametrize("case", ["lora", "loha", "lokr", "ia3", "full"])
@torch.no_grad()
def test_strength_scales_like_the_lycoris_multiplier(case):
    unet = random_unet(tiny_config("sd1"), seed=23)
    ref = diffusers_twin(unet)
    network, tensors = lycoris_file(ref, case, seed=24)
    network.set_multiplier(-0.6)
    patched, _ = apply_to_model(DiffusionModel.for_family(unet, "sd1"), tensors, -0.6, PATH)
    x, t, context = inputs(unet.config)
    assert rel_err(patched.unet(x, t, context), ref(x, t, encoder_hidden_states=context).sample) <= 1e-4


@torch.no_grad()
def test_dora_at_other_strengths_blends_toward_the_decomposed_weight_as_comfyui():
    """W' = W + s·(m·W_c/‖W_c‖ − W) with W_c = W + (a/r)·U·D, norms per input column for m [1, in]."""
    g = torch.Generator().manual_seed(25)
    w = torch.randn(6, 5, generator=g)
    up, down, m = torch.randn(6, 2, generator=g), torch.randn(2, 5, generator=g), torch.rand(1, 5, generator=g) + 0.5
    layer = parse_layers({"x.lora_up.weight": up, "x.lora_down.weight": down, "x.alpha": torch.tensor(1.0),
                          "x.dora_scale": m})[0]["x"]
    combined = w + 0.5 * up @ down
    norms = torch.stack([combined[:, j].norm() for j in range(5)])
    want = w + 0.3 * (combined * (m[0] / norms) - w)
    torch.testing.assert_close(patched_weight(layer, w, 0.3, PATH), want, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_ia3_on_input_rescales_the_input_channels():
    """(IA)³ trained on the input side (``on_input`` = 1): W'[:, j] = W[:, j]·(1 + s·w[j])."""
    w, scale = torch.randn(3, 5, 3, 3), torch.randn(5)
    layer = parse_layers({"x.weight": scale.reshape(1, 5, 1, 1), "x.on_input": torch.tensor(1)})[0]["x"]
    want = torch.stack([w[:, j] * (1 + 0.7 * scale[j]) for j in range(5)], dim=1)
    torch.testing.assert_close(patched_weight(layer, w, 0.7, PATH), want)


@torch.no_grad()
def test_full_difference_changes_the_bias_too():
    w, b = torch.randn(4, 3), torch.randn(4)
    layer = parse_layers({"x.diff": torch.ones(4, 3), "x.diff_b": torch.arange(4.0)})[0]["x"]
    from nodes.sd.lora import patched_bias

    torch.testing.assert_close(patched_weight(layer, w, 0.5, PATH), w + 0.5)
    torch.testing.assert_close(patched_bias(layer, b, 0.5, PATH), b + 0.5 * torch.arange(4.0))


def test_a_lycoris_layer_of_another_shape_names_the_file_and_layer():
    layer = parse_layers({"lora_unet_conv_in.hada_w1_a": torch.zeros(32, 2), "lora_unet_conv_in.hada_w1_b": torch.zeros(2, 9),
                          "lora_unet_conv_in.hada_w2_a": torch.zeros(32, 2),
                          "lora_unet_conv_in.hada_w2_b": torch.zeros(2, 9)})[0]
    unet = random_unet(tiny_config("sd1"), seed=1)
    with pytest.raises(LoraError, match=r"test\.safetensors: layer lora_unet_conv_in \(loha\) .* another model"):
        apply_to_model(DiffusionModel.for_family(unet, "sd1"), layer, 1.0, PATH)


def test_oft_and_glora_layers_are_named_as_families_not_applied():
    layers, other = parse_layers({"a.oft_blocks": torch.zeros(1), "b.a1.weight": torch.zeros(1),
                                  "c.lora_up.weight": torch.zeros(1, 1), "c.lora_down.weight": torch.zeros(1, 1)})
    assert sorted(layers) == ["c"] and other == {"OFT": ["a"], "GLoRA": ["b"]}


# ---------------------------------------------------------------------------------- PEFT metadata
def peft_file(seed: int, rank: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.randn(rank, 32, 1, 1, generator=g),
            "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.randn(32, rank, 1, 1, generator=g),
            "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.randn(rank, 64, generator=g),
            "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.randn(64, rank, generator=g)}


@pytest.mark.parametrize("metadata, scales", [
    ({}, (1.0, 1.0)),
    ({"lora_alpha": 8, "r": 4}, (2.0, 2.0)),
    ({"unet.lora_alpha": 2, "unet.r": 4, "unet.alpha_pattern": {"mid_block.attentions.0.transformer_blocks.0.attn1.to_q": 12}},
     (0.5, 3.0)),
    ({"lora_alpha": 8, "r": 4, "use_rslora": True}, (4.0, 4.0)),
], ids=["no-metadata", "lora_alpha", "pipeline-alpha_pattern", "rslora"])
def test_peft_alpha_comes_from_diffusers_metadata_as_peft_scales_it(metadata, scales):
    """PEFT scales a layer by lora_alpha/r (lora_alpha/√r with rsLoRA); alpha_pattern overrides per module."""
    import json

    tensors = peft_file(26)
    meta = {"lora_adapter_metadata": json.dumps(metadata)} if metadata else {}
    layers = parse_layers(kohya_names(tensors, meta))[0]
    proj_in = layers["lora_unet_down_blocks_0_attentions_0_proj_in"]
    to_q = layers["lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q"]
    for layer, scale in zip((proj_in, to_q), scales):
        assert (layer.alpha or 4) / 4 == pytest.approx(scale)
        w = torch.zeros(layer.tensors["lora_up.weight"].shape[0], *layer.tensors["lora_down.weight"].shape[1:])
        product = layer.get("lora_up.weight").flatten(1) @ layer.get("lora_down.weight").flatten(1)
        torch.testing.assert_close(patched_weight(layer, w, 1.0, PATH), scale * product.reshape(w.shape))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@torch.no_grad()
def test_low_precision_weights_get_the_float32_sum_rounded_once(dtype):
    """As ComfyUI: W' = round(W + s·(a/r)·up @ down) computed in float32. The product is made in row
    chunks, so a result may differ from the one-matmul reference by the float32 rounding of the
    product (far below the target dtype's ulp): allow one ulp of the target dtype."""
    from nodes.sd.lora import low_rank_update

    g = torch.Generator().manual_seed(27)
    w = torch.randn(640, 1280, generator=g).to(dtype)
    up, down = torch.randn(640, 8, generator=g) * 0.1, torch.randn(8, 1280, generator=g) * 0.1
    layer = parse_layers({"x.lora_up.weight": up, "x.lora_down.weight": down, "x.alpha": torch.tensor(4.0)})[0]["x"]
    got = low_rank_update(layer, w, 0.8, PATH)
    want = (w.float() + 0.8 * 0.5 * (up @ down)).to(dtype)
    assert got.dtype == dtype
    ulp = torch.finfo(dtype).eps * want.float().abs().clamp_min(1e-3)
    assert ((got.float() - want.float()).abs() <= ulp).all()


@pytest.mark.parametrize("case", sorted(CASES))
@torch.no_grad()
def test_lycoris_file_as_weight_patches_equals_diffusers_running_the_lycoris_network(case):
    """What Load LoRA returns: the shared U-Net carrying the file as weight patches, applied while in use
    (same weights as the merged copy up to the rounding of another summation order: 1e-4 as above)."""
    from nodes.sd.lora import model_with_lora

    unet = random_unet(tiny_config("sd1"), seed=25)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    ref = diffusers_twin(unet)
    network, tensors = lycoris_file(ref, case, seed=26)
    strength = 1.0 if "dora" in case else 0.7  # LyCORIS's DoRA means another thing at other strengths
    network.set_multiplier(strength)
    model = DiffusionModel.for_family(unet, "sd1")
    patched, applied = model_with_lora(model, tensors, strength, PATH)
    assert patched.unet is unet and len(applied) == len(network.loras)
    x, t, context = inputs(unet.config)
    with patched.in_use():
        ours = unet(x, t, context)
    assert rel_err(ours, ref(x, t, encoder_hidden_states=context).sample) <= 1e-4
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())  # restored bit for bit
