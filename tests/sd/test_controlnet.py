"""ControlNets, T2I-Adapters and Control-LoRAs equal diffusers' models on the same weights.

ControlNet: a random ControlNet in the original layout (zero convs random, so every residual is
non-zero) is read by our loader and converted by diffusers' own single-file converter
(``convert_controlnet_checkpoint``) into its ``ControlNetModel``; the residuals must agree. The same
weights saved in diffusers' layout must load onto the same model. T2I-Adapter: against diffusers'
``T2IAdapter`` holding the same weights. Control-LoRA: against a ControlNet built from an
independent merge (base weight + up @ down) written in the test.

Tolerance: both sides run the same float32 convolutions and attention over the same weights; the
order of float32 accumulations differs (our unfold+matmul conv path, fused attention), each
residual a few ulps apart per layer, so 1e-5 relative error over a residual (the U-Net itself is
held to 1e-4 in tests/sd/test_unet.py, twenty times deeper).
"""
from __future__ import annotations

import pytest
import torch
from test_unet import rel_err

from nodes.sd.control import ControlError, load_control
from nodes.sd.control.cldm import ControlNetConfig, ControlNetModel
from nodes.sd.control.files import diffusers_names, read_control
from nodes.sd.control.loading import build_control_lora
from nodes.sd.control.testing import (adapter_config_for, random_adapter, random_control_lora, random_controlnet,
                                      unet_config_for)
from nodes.sd.testing import random_unet, save_safetensors
from nodes.sd.unet import full_config, ldm_yaml_config, tiny_config

from diffusers import ControlNetModel as DiffusersControlNet  # noqa: E402
from diffusers import T2IAdapter  # noqa: E402
from diffusers.loaders.single_file_utils import (  # noqa: E402
    convert_controlnet_checkpoint,
    create_unet_diffusers_config_from_ldm,
)

# the U-Net config fields diffusers' create_controlnet_diffusers_config_from_ldm copies (0.42.1's own
# function passes create_unet_diffusers_config_from_ldm too few arguments, so the test picks them)
CONTROLNET_FIELDS = ("in_channels", "down_block_types", "block_out_channels", "layers_per_block",
                     "cross_attention_dim", "attention_head_dim", "use_linear_projection", "class_embed_type",
                     "addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim",
                     "transformer_layers_per_block")

TOL = 1e-5


def diffusers_controlnet(ours: ControlNetModel, device: str = "cpu") -> DiffusersControlNet:
    """diffusers' ControlNetModel converted by diffusers from our model's original-layout weights."""
    checkpoint = dict(ours.state_dict())
    unet = create_unet_diffusers_config_from_ldm(ldm_yaml_config(ours.config.unet),
                                                 {"model.diffusion_model." + k: v for k, v in checkpoint.items()})
    config = {k: unet[k] for k in CONTROLNET_FIELDS if k in unet}
    config["conditioning_channels"] = ours.config.hint_channels
    with torch.device(device):
        ref = DiffusersControlNet(**config)
    if device == "meta":
        checkpoint = {k: torch.empty(v.shape, device="meta") for k, v in checkpoint.items()}
    converted = convert_controlnet_checkpoint(checkpoint, config)
    # diffusers' ControlNet converter leaves SDXL's label_emb out (a TODO in its source); its U-Net
    # converter names those layers add_embedding.linear_1/2, which is what ControlNetModel has too
    for i, j in ((0, 1), (2, 2)):
        for leaf in ("weight", "bias"):
            if f"label_emb.0.{i}.{leaf}" in checkpoint:
                converted[f"add_embedding.linear_{j}.{leaf}"] = checkpoint[f"label_emb.0.{i}.{leaf}"]
    if device == "meta":
        assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ref.state_dict().items()}
        return ref
    ref.load_state_dict(converted, strict=True)
    return ref.eval()


def inputs(cfg, seed: int, h: int = 8, w: int = 8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cfg.in_channels, h, w, generator=g)
    hint = torch.rand(2, 3, h * 8, w * 8, generator=g)
    context = torch.randn(2, 7, cfg.context_dim, generator=g)
    t = torch.tensor([981.0, 17.5])
    y = torch.randn(2, cfg.adm_in_channels, generator=g) if cfg.adm_in_channels else None
    return x, hint, t, context, y


def reference(ref: DiffusersControlNet, x, hint, t, context, y):
    kwargs = {}
    if y is not None:  # diffusers embeds the SDXL numbers itself: hand it y's parts back
        kwargs["added_cond_kwargs"] = {"text_embeds": y[:, :-6 * 256], "time_ids": torch.zeros(2, 6)}
    return ref(x, t, encoder_hidden_states=context, controlnet_cond=hint, return_dict=False, **kwargs)


def assert_same_residuals(ours: dict, down, mid) -> None:
    assert len(ours["output"]) == len(down)
    for a, b in zip(ours["output"], down):
        assert b.abs().max() > 0 and rel_err(a, b) <= TOL
    assert rel_err(ours["middle"][0], mid) <= TOL


@pytest.mark.parametrize("family", ["sd1", "sd2"])
@torch.no_grad()
def test_controlnet_residuals_equal_diffusers_controlnet_converted_from_the_same_file(family):
    ours = random_controlnet(ControlNetConfig(unet_config_for(family)), seed=31)
    ref = diffusers_controlnet(ours)
    x, hint, t, context, y = inputs(ours.config.unet, seed=32)
    assert_same_residuals(ours(x, hint, t, context), *reference(ref, x, hint, t, context, None))


@torch.no_grad()
def test_sdxl_controlnet_residuals_equal_diffusers():
    """diffusers builds SDXL's y itself from text_embeds and time_ids; we hand our ControlNet the y
    diffusers' own embedding makes of them, so both see the same vector."""
    ours = random_controlnet(ControlNetConfig(tiny_config("sdxl")), seed=33)  # SDXL's real context/adm widths
    ref = diffusers_controlnet(ours)
    x, hint, t, context, _ = inputs(ours.config.unet, seed=34)
    pooled = torch.randn(2, ours.config.unet.adm_in_channels - 6 * 256)
    time_ids = torch.tensor([[768.0, 1024.0, 0.0, 0.0, 768.0, 1024.0]]).repeat(2, 1)
    from nodes.sd.unet import sdxl_adm

    y = sdxl_adm(pooled, width=1024, height=768)
    down, mid = ref(x, t, encoder_hidden_states=context, controlnet_cond=hint, return_dict=False,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids})
    assert_same_residuals(ours(x, hint, t, context, y), down, mid)


@torch.no_grad()
def test_full_sd15_controlnet_equals_diffusers():
    ours = random_controlnet(ControlNetConfig(full_config("sd1")), seed=35)
    ref = diffusers_controlnet(ours)
    x, hint, t, context, _ = inputs(ours.config.unet, seed=36)
    assert_same_residuals(ours(x, hint, t, context), *reference(ref, x, hint, t, context, None))


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_full_size_layouts_convert_name_for_name_with_diffusers(family):
    with torch.device("meta"):
        ours = ControlNetModel(ControlNetConfig(full_config(family)))
    ref = diffusers_controlnet(ours, device="meta")
    names = diffusers_names(ours.config)
    assert sorted(names.values()) == sorted(ref.state_dict())


@pytest.mark.parametrize("layout", ["ldm", "control_model_prefix", "diffusers"])
@torch.no_grad()
def test_every_file_layout_loads_the_same_controlnet(layout, tmp_path):
    ours = random_controlnet(ControlNetConfig(unet_config_for("sd1")), seed=37)
    tensors = dict(ours.state_dict())
    if layout == "control_model_prefix":
        tensors = {"control_model." + k: v for k, v in tensors.items()}
    elif layout == "diffusers":
        tensors = dict(diffusers_controlnet(ours).state_dict())
    path = save_safetensors(tmp_path / "cn.safetensors", tensors)
    loaded = load_control(path)
    assert loaded.kind == "controlnet"
    for (name, a), (_, b) in zip(ours.state_dict().items(), loaded.module.state_dict().items()):
        assert torch.equal(a, b), name


# -------------------------------------------------------------------------------------- T2I-Adapter
def diffusers_adapter(ours, kind: str) -> T2IAdapter:
    """diffusers' T2IAdapter with our adapter's weights, renamed by diffusers' layout rules
    (full: ``adapter.body.L.resnets.J`` for our ``body.(L·2+J)``, the level's ``in_conv`` on its
    first block; light: ``adapter.body.L.resnets.J`` for ``body.L.body.J``)."""
    cfg = ours.config
    channels = list(cfg.channels[:-1] if kind == "light" else cfg.channels)
    ref = T2IAdapter(in_channels=cfg.hint_channels, channels=channels, num_res_blocks=cfg.nums_rb,
                     downscale_factor=cfg.unshuffle, adapter_type={"full": "full_adapter", "full_xl": "full_adapter_xl",
                                                                   "light": "light_adapter"}[kind])
    renamed = {}
    for key, value in ours.state_dict().items():
        parts = key.split(".")
        if parts[0] == "body" and kind == "light":
            if parts[2] == "body":
                key = f"body.{parts[1]}.resnets.{parts[3]}.{'.'.join(parts[4:])}"
        elif parts[0] == "body":
            level, j = divmod(int(parts[1]), cfg.nums_rb)
            rest = ".".join(parts[2:])
            key = f"body.{level}.{rest}" if parts[2] == "in_conv" else f"body.{level}.resnets.{j}.{rest}"
        renamed["adapter." + key] = value
    ref.load_state_dict(renamed, strict=True)
    return ref.eval(), renamed


@pytest.mark.parametrize("kind, family", [("full", "sd1"), ("light", "sd1"), ("full_xl", "sdxl")])
@torch.no_grad()
def test_t2i_adapter_features_equal_diffusers_t2i_adapter(kind, family, tmp_path):
    ours = random_adapter(adapter_config_for(unet_config_for(family), kind), seed=38)
    ref, diffusers_tensors = diffusers_adapter(ours, kind)
    hint = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(39))
    features, expected = ours(hint), ref(hint)
    assert len(features) == len(expected)
    for a, b in zip(features, expected):
        assert rel_err(a, b) <= TOL
    # and the diffusers-layout file loads onto the same adapter
    loaded = load_control(save_safetensors(tmp_path / "t2i.safetensors", diffusers_tensors))
    assert loaded.kind == "t2i" and loaded.module.config == ours.config
    for a, b in zip(loaded.module(hint), expected):
        assert rel_err(a, b) <= TOL


# ------------------------------------------------------------------------------------- Control-LoRA
@torch.no_grad()
def test_control_lora_equals_a_controlnet_of_the_merged_weights(tmp_path):
    unet = random_unet(unet_config_for("sdxl"), seed=40)
    lora = random_control_lora(unet.config, seed=41)
    base = unet.state_dict()
    merged = {}
    for name, value in random_controlnet(ControlNetConfig(unet.config)).state_dict().items():
        module = name.rsplit(".", 1)[0]
        if f"{module}.up" in lora and name.endswith(".weight"):
            up, down = lora[f"{module}.up"], lora[f"{module}.down"]
            merged[name] = base[name] + (up.reshape(up.shape[0], -1) @ down.reshape(down.shape[0], -1)).reshape(value.shape)
        else:
            merged[name] = lora.get(name, base.get(name))
    expected = ControlNetModel(ControlNetConfig(unet.config))
    expected.load_state_dict(merged, strict=True)
    built = build_control_lora(lora, unet, tmp_path / "cl.safetensors")
    x, hint, t, context, y = inputs(unet.config, seed=42)
    want, got = expected(x, hint, t, context, y), built(x, hint, t, context, y)
    for a, b in zip(got["output"] + got["middle"], want["output"] + want["middle"]):
        assert rel_err(a, b) <= TOL
    assert read_control(save_safetensors(tmp_path / "cl.safetensors", lora)).kind == "control_lora"


def test_a_file_that_is_no_control_model_says_so(tmp_path):
    path = save_safetensors(tmp_path / "vae.safetensors", {"encoder.conv_in.weight": torch.zeros(1)})
    with pytest.raises(ControlError, match=r"vae\.safetensors: not a ControlNet, T2I-Adapter or Control-LoRA"):
        load_control(path)


def test_a_difference_controlnet_needs_the_model(tmp_path):
    ours = random_controlnet(ControlNetConfig(unet_config_for("sd1")), seed=43)
    tensors = {"control_model." + k: v for k, v in ours.state_dict().items()} | {"difference": torch.tensor([])}
    path = save_safetensors(tmp_path / "diff.safetensors", tensors)
    with pytest.raises(ControlError, match=r"diff\.safetensors: a difference ControlNet.*DiffControlNetLoader"):
        load_control(path)


# ---------------------------------------------------------------------------------- ControlNet-Union
def diffusers_union(ours: ControlNetModel):
    """diffusers' ControlNetUnionModel with our union ControlNet's weights: the ControlNet part converted
    by diffusers' converter (as diffusers_controlnet), the union part under the names both use."""
    import inspect

    from diffusers import ControlNetUnionModel

    union_keys = ("task_embedding", "control_add_embedding.", "transformer_layes.", "spatial_ch_projs.")
    plain = {k: v for k, v in ours.state_dict().items() if not k.startswith(union_keys)}
    net = ControlNetModel(ControlNetConfig(ours.config.unet))
    net.load_state_dict(plain, strict=True)
    base = diffusers_controlnet(net)
    mc = ours.config.unet.model_channels
    config = {k: v for k, v in base.config.items() if k in inspect.signature(ControlNetUnionModel.__init__).parameters}
    config.update(num_control_type=ours.config.union_types, num_trans_channel=mc, num_trans_head=8,
                  num_proj_channel=mc, conditioning_embedding_out_channels=(16, 32, 96, 256))
    ref = ControlNetUnionModel(**config)
    tensors = dict(base.state_dict()) | {k: v for k, v in ours.state_dict().items() if k.startswith(union_keys)}
    ref.load_state_dict(tensors, strict=True)
    return ref.eval(), tensors


def sdxl_inputs(cfg, seed: int):
    from nodes.sd.unet import sdxl_adm

    g = torch.Generator().manual_seed(seed)
    x, hint = torch.randn(1, 4, 8, 8, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    context, t = torch.randn(1, 7, cfg.context_dim, generator=g), torch.tensor([500.0])
    pooled = torch.randn(1, cfg.adm_in_channels - 6 * 256, generator=g)
    kwargs = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}}
    return x, hint, t, context, sdxl_adm(pooled, width=64, height=64), kwargs


@pytest.mark.parametrize("control_type", [3, 7])
@torch.no_grad()
def test_union_controlnet_equals_diffusers_controlnet_union_model(control_type, tmp_path):
    """Batch 1: diffusers' union attention runs nn.MultiheadAttention sequence-first over [batch,
    tokens, channels], so with one batch element each token attends to itself alone, which is what
    ComfyUI's one-token attention computes (diffusers' extra token for the latent feeds only its own
    row). Larger batches mix across the batch in diffusers, not in ComfyUI; we follow ComfyUI."""
    cfg = tiny_config("sdxl")
    ours = random_controlnet(ControlNetConfig(cfg, union_types=8), seed=44)
    ref, tensors = diffusers_union(ours)
    x, hint, t, context, y, kwargs = sdxl_inputs(cfg, seed=45)
    one_hot = torch.zeros(1, 8)
    one_hot[0, control_type] = 1.0
    down, mid = ref(x, t, encoder_hidden_states=context, controlnet_cond=[hint], control_type=one_hot,
                    control_type_idx=[control_type], return_dict=False, **kwargs)
    assert_same_residuals(ours(x, hint, t, context, y, control_type=[control_type]), down, mid)
    loaded = load_control(save_safetensors(tmp_path / "union.safetensors", tensors))  # diffusers' layout
    assert loaded.module.config.union_types == 8
    assert_same_residuals(loaded.module(x, hint, t, context, y, control_type=[control_type]), down, mid)


@torch.no_grad()
def test_union_controlnet_without_a_type_takes_the_plain_hint_path():
    """ComfyUI's "auto": the hint through the hint convs alone, and the type embedding of an all-zero
    type vector (computed here by diffusers' own modules) added to the time embedding, i.e. a plain
    ControlNet whose time embedding's last bias carries that constant."""
    cfg = tiny_config("sdxl")
    ours = random_controlnet(ControlNetConfig(cfg, union_types=8), seed=46)
    ref, _ = diffusers_union(ours)
    offset = ref.control_add_embedding(ref.control_type_proj(torch.zeros(8)).reshape(1, -1))[0]
    plain = ControlNetModel(ControlNetConfig(cfg))
    plain.load_state_dict({k: v for k, v in ours.state_dict().items() if k in plain.state_dict()}, strict=True)
    plain.time_embed[2].bias += offset
    x, hint, t, context, y, _ = sdxl_inputs(cfg, seed=47)
    got, want = ours(x, hint, t, context, y, control_type=[]), plain(x, hint, t, context, y)
    for a, b in zip(got["output"] + got["middle"], want["output"] + want["middle"]):
        assert rel_err(a, b) <= TOL
