"""The text encoders compute what transformers' CLIP models compute on the same weights, converted to
transformers' layout by diffusers' own single-file converters, and the family wrapper applies
ComfyUI's windowing, weighting, layer choice and pooling."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from nodes.sd.text_encoders import (
    SDTextEncoder,
    TextEncoderKeyError,
    build_model,
    build_text_encoder,
    check_keys,
    config_from_state_dict,
    family_slots,
    full_config,
    text_encoder_state_dicts,
    tiny_config,
)
from nodes.sd.tokenizer import get_tokenizer
from numerics import path_rtol, rel_err

WIDTH = 128  # two 64-wide heads, so the head split is exercised
PROMPTS = ["a photo of an astronaut riding a horse on mars, 4k",
           "portrait, oil painting, (dramatic lighting:1.3), " * 10]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and far faster than on two when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ids_for(pad: int) -> torch.Tensor:
    """A batch of real token windows: a short prompt and both windows of a long one."""
    tok = get_tokenizer()
    windows = [w for p in PROMPTS for w in tok.tokenize_weighted(p, pad)]
    return torch.tensor([[t for t, _ in w] for w in windows])


def hf_config(kind: str) -> CLIPTextConfig:
    cfg = tiny_config(kind, width=WIDTH)
    return CLIPTextConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_width,
                          num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                          max_position_embeddings=cfg.context_length, hidden_act=cfg.activation,
                          projection_dim=cfg.projection_dim or cfg.width, layer_norm_eps=1e-5)


def ref_clip_l(sd: dict) -> CLIPTextModel:
    """transformers' CLIPTextModel filled by diffusers' convert_ldm_clip_checkpoint."""
    model = CLIPTextModel(hf_config("clip_l")).eval()
    converted = {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(sd).items()}
    model.load_state_dict(converted, strict=True)
    return model


def ref_open_clip(sd: dict, prefix: str, kind: str) -> CLIPTextModelWithProjection:
    """transformers' CLIPTextModelWithProjection filled by diffusers' convert_open_clip_checkpoint."""
    model = CLIPTextModelWithProjection(hf_config(kind)).eval()
    model.load_state_dict(convert_open_clip_checkpoint(model, sd, prefix=prefix), strict=True)
    return model


@pytest.fixture(scope="module")
def sd1():
    sd = text_encoder_state_dicts("sd1", width=WIDTH)
    return sd, build_text_encoder("sd1", sd), ref_clip_l(sd)


@pytest.fixture(scope="module")
def sdxl():
    sd = text_encoder_state_dicts("sdxl", width=WIDTH, seed=3)
    return (sd, build_text_encoder("sdxl", sd), ref_clip_l(sd),
            ref_open_clip(sd, "conditioner.embedders.1.model.", "open_clip_bigg"))


@pytest.fixture(scope="module")
def sd2():
    sd = text_encoder_state_dicts("sd2", width=WIDTH, seed=5)
    return sd, build_text_encoder("sd2", sd)


# ----------------------------------------------------------------------- equivalence with transformers

@torch.no_grad()
def test_sd1_clip_l_last_layer_and_pooled_match_transformers(sd1):
    _, enc, ref = sd1
    ids = ids_for(pad=49407)
    out = ref(ids)
    hidden, pooled = enc.models["l"](ids, None, True, "plain")
    assert rel_err(hidden, out.last_hidden_state) <= 1e-4
    assert rel_err(pooled, out.pooler_output) <= 1e-4


@pytest.mark.parametrize("layer", [-1, -2, -3])
@torch.no_grad()
def test_sd1_clip_skip_is_the_final_normed_hidden_state_of_that_layer(sd1, layer):
    _, enc, ref = sd1
    ids = ids_for(pad=49407)
    expected = ref.final_layer_norm(ref(ids, output_hidden_states=True).hidden_states[layer])
    hidden, _ = enc.models["l"](ids, layer, True, None)
    assert rel_err(hidden, expected) <= 1e-4


@torch.no_grad()
def test_sd1_encode_of_a_prompt_equals_transformers_on_its_padded_window(sd1):
    _, enc, ref = sd1
    framed = get_tokenizer().encode(PROMPTS[0])
    ids = torch.tensor([framed + [49407] * (77 - len(framed))])
    cond, pooled = enc.encode(PROMPTS[0])
    out = ref(ids)
    assert cond.shape == (1, 77, WIDTH) and pooled.shape == (1, WIDTH)
    assert rel_err(cond, out.last_hidden_state) <= 1e-4
    assert rel_err(pooled, out.pooler_output) <= 1e-4


@pytest.mark.parametrize("layer", [-2, -1, -3])
@torch.no_grad()
def test_sdxl_clip_l_hidden_state_is_not_normed_and_matches_transformers(sdxl, layer):
    _, enc, ref_l, _ = sdxl
    ids = ids_for(pad=49407)
    expected = ref_l(ids, output_hidden_states=True).hidden_states[layer]
    hidden, _ = enc.models["l"](ids, layer, False, None)
    assert rel_err(hidden, expected) <= 1e-4


@pytest.mark.parametrize("layer", [-2, -1, -3])
@torch.no_grad()
def test_sdxl_bigg_hidden_state_and_projected_pooled_match_transformers(sdxl, layer):
    _, enc, _, ref_g = sdxl
    ids = ids_for(pad=0)
    out = ref_g(ids, output_hidden_states=True)
    hidden, pooled = enc.models["g"](ids, layer, False, "projected")
    assert rel_err(hidden, out.hidden_states[layer]) <= 1e-4
    assert rel_err(pooled, out.text_embeds) <= 1e-4


@torch.no_grad()
def test_sdxl_encode_concatenates_clip_l_then_bigg_and_pools_bigg_of_first_window(sdxl):
    _, enc, ref_l, ref_g = sdxl
    text = PROMPTS[1]  # two windows
    tokens = enc.tokenize(text)
    ids_l = torch.tensor([[t for t, _ in w] for w in tokens["l"]])
    ids_g = torch.tensor([[t for t, _ in w] for w in tokens["g"]])
    assert ids_l[0, -1] == 49407 and ids_g[0, -1] == 0  # CLIP-L pads with the end token, bigG with 0
    out_g = ref_g(ids_g, output_hidden_states=True)
    expected = torch.cat([ref_l(ids_l, output_hidden_states=True).hidden_states[-2].reshape(1, 154, -1),
                          out_g.hidden_states[-2].reshape(1, 154, -1)], dim=-1)
    unweighted = enc.encode_tokens({k: [[(t, 1.0) for t, _ in w] for w in v] for k, v in tokens.items()})
    assert unweighted[0].shape == (1, 154, 2 * WIDTH)
    assert rel_err(unweighted[0], expected) <= 1e-4
    assert rel_err(unweighted[1], out_g.text_embeds[:1]) <= 1e-4


@torch.no_grad()
def test_sdxl_refiner_bigg_matches_transformers():
    sd = text_encoder_state_dicts("sdxl_refiner", width=WIDTH, seed=7)
    enc = build_text_encoder("sdxl_refiner", sd)
    ref = ref_open_clip(sd, "conditioner.embedders.0.model.", "open_clip_bigg")
    cond, pooled = enc.encode(PROMPTS[0])
    ids = torch.tensor([[t for t, _ in enc.tokenize(PROMPTS[0])["g"][0]]])
    out = ref(ids, output_hidden_states=True)
    assert cond.shape == (1, 77, WIDTH) and pooled.shape == (1, WIDTH + 8)
    assert rel_err(cond, out.hidden_states[-2]) <= 1e-4
    assert rel_err(pooled, out.text_embeds) <= 1e-4


@torch.no_grad()
def test_sd2_context_equals_diffusers_sd2_text_encoder_without_its_last_layer(sd2):
    """diffusers' SD2 text encoder is a CLIPTextModel one layer shorter (its converter skips the last
    resblock), whose output goes through the final norm: ComfyUI's "penultimate, normed"."""
    sd, enc = sd2
    config = hf_config("open_clip_h")
    config.num_hidden_layers -= 1
    ref = CLIPTextModel(config).eval()
    converted = {k.removeprefix("text_model."): v
                 for k, v in convert_open_clip_checkpoint(ref, sd, prefix="cond_stage_model.model.").items()}
    result = ref.load_state_dict(converted, strict=False)
    last = tiny_config("open_clip_h").layers - 1
    assert result.missing_keys == [] and all(k.startswith(f"encoder.layers.{last}.") for k in result.unexpected_keys)
    ids = ids_for(pad=0)
    hidden, _ = enc.models["h"](ids, -2, True, None)
    assert rel_err(hidden, ref(ids).last_hidden_state) <= 1e-4
    cond, _ = enc.encode(PROMPTS[0])
    assert rel_err(cond[0], ref(ids[:1]).last_hidden_state[0]) <= 1e-4


@torch.no_grad()
def test_sd2_pooled_is_the_projected_eos_state_of_the_full_stack(sd2):
    sd, enc = sd2
    ref = CLIPTextModel(hf_config("open_clip_h")).eval()
    converted = {k.removeprefix("text_model."): v
                 for k, v in convert_open_clip_checkpoint(ref, sd, prefix="cond_stage_model.model.").items()}
    ref.load_state_dict(converted, strict=True)  # diffusers drops SD2's text_projection: apply the raw one
    ids = ids_for(pad=0)[:1]
    _, pooled = enc.encode(PROMPTS[0])
    expected = ref(ids).pooler_output @ sd["cond_stage_model.model.text_projection"]
    assert rel_err(pooled, expected) <= 1e-4


# ------------------------------------------------------------------------------ ComfyUI's weighting

@torch.no_grad()
def test_a_weight_of_one_equals_the_unweighted_encoding(sd1):
    _, enc, _ = sd1
    plain, plain_pooled = enc.encode("a red cat")
    weighted, weighted_pooled = enc.encode("a (red cat:1.0)")
    assert torch.equal(plain, weighted) and torch.equal(plain_pooled, weighted_pooled)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
@torch.no_grad()
def test_a_weighted_token_moves_away_from_the_empty_prompt_by_its_weight(family, sd1, sdxl):
    enc = sd1[1] if family == "sd1" else sdxl[1]
    plain, plain_pooled = enc.encode("a red cat")  # tokens: start, a, red, cat, end, pad…
    weighted, weighted_pooled = enc.encode("a (red:1.2) cat")
    empty, _ = enc.encode("")
    expected = plain.clone()
    expected[0, 2] = (plain[0, 2] - empty[0, 2]) * 1.2 + empty[0, 2]
    # The weighted prompt is encoded beside the empty one (a batch of 2), the others alone: the same
    # mathematics summed in another order, so equal within path_rtol; the weighted token's formula
    # scales the errors of z and z_empty by 1.2 and 2.2.
    eps = path_rtol(*enc.models.values())
    assert rel_err(weighted, expected) <= 3.4 * eps
    others = torch.ones(77, dtype=torch.bool)
    others[2] = False
    assert rel_err(weighted[0, others], plain[0, others]) <= eps
    assert not torch.allclose(weighted[0, 2], plain[0, 2])
    assert rel_err(weighted_pooled, plain_pooled) <= eps  # pooled is never weighted


@torch.no_grad()
def test_nested_and_bracketed_weights_reach_the_right_tokens(sd1):
    _, enc, _ = sd1
    windows = enc.tokenize("((red)) [cat] \\(dog\\)")["l"][0]
    assert [w for _, w in windows[:6]] == pytest.approx([1.0, 1.21, 1 / 1.1, 1.0, 1.0, 1.0])
    plain, _ = enc.encode("red cat (dog)".replace("(", "\\(").replace(")", "\\)"))
    weighted, _ = enc.encode("((red)) [cat] \\(dog\\)")
    empty, _ = enc.encode("")
    eps = path_rtol(*enc.models.values())  # a batch of 2 against batches of 1, as above
    for pos, w in [(1, 1.21), (2, 1 / 1.1)]:
        expected = (plain[0, pos] - empty[0, pos]) * w + empty[0, pos]
        assert rel_err(weighted[0, pos], expected) <= (1 + 2 * w) * eps
    assert rel_err(weighted[0, 3:], plain[0, 3:]) <= eps


@torch.no_grad()
def test_square_brackets_can_be_read_as_text_like_comfyui(sd1):
    _, enc, ref = sd1
    cond, _ = enc.encode("[cat]", square_brackets=False)
    ids = torch.tensor([[t for t, _ in get_tokenizer().tokenize_weighted("[cat]", 49407, square_brackets=False)[0]]])
    assert ids[0, 1:4].tolist() == get_tokenizer().ids("[cat]")
    assert rel_err(cond, ref(ids).last_hidden_state) <= 1e-4


@torch.no_grad()
def test_a_long_prompt_gives_154_tokens_whose_windows_are_encoded_independently(sd1):
    _, enc, _ = sd1
    text = "a castle on a hill at sunset, " * 12  # 96 tokens → two windows
    cond, pooled = enc.encode(text)
    assert cond.shape == (1, 154, WIDTH)
    windows = enc.tokenize(text)["l"]
    eps = path_rtol(enc.models["l"])  # both windows in one batch against each alone: another summation order
    for i, window in enumerate(windows):
        alone, _ = enc.models["l"](torch.tensor([[t for t, _ in window]]), None, True, None)
        assert rel_err(cond[:, 77 * i:77 * (i + 1)], alone) <= eps
    _, first_pooled = enc.models["l"](torch.tensor([[t for t, _ in windows[0]]]), None, True, "plain")
    assert rel_err(pooled, first_pooled) <= eps


@torch.no_grad()
def test_with_last_layer_returns_a_copy_and_leaves_the_original_alone(sd1):
    _, enc, ref = sd1
    before, _ = enc.encode(PROMPTS[0])
    skipped = enc.with_last_layer(-2)
    assert skipped is not enc and skipped.models is enc.models and enc.last_layer is None
    after, _ = enc.encode(PROMPTS[0])
    assert torch.equal(before, after)
    ids = ids_for(pad=49407)[:1]
    expected = ref.final_layer_norm(ref(ids, output_hidden_states=True).hidden_states[-2])
    assert rel_err(skipped.encode(PROMPTS[0])[0], expected) <= 1e-4


@torch.no_grad()
def test_clip_skip_beyond_the_depth_falls_back_to_the_last_normed_layer(sdxl):
    _, enc, ref_l, ref_g = sdxl
    cond, _ = enc.with_last_layer(-40).encode(PROMPTS[0])
    tokens = enc.tokenize(PROMPTS[0])
    ids_l = torch.tensor([[t for t, _ in tokens["l"][0]]])
    ids_g = torch.tensor([[t for t, _ in tokens["g"][0]]])
    expected = torch.cat([ref_l(ids_l).last_hidden_state, ref_g(ids_g).last_hidden_state], dim=-1)
    assert rel_err(cond, expected) <= 1e-4


# ------------------------------------------------------------------------------- loading and configs

def test_module_keys_are_the_checkpoint_keys_without_their_prefix():
    for family in ["sd1", "sd2", "sdxl", "sdxl_refiner"]:
        sd = text_encoder_state_dicts(family)
        for slot in family_slots(family):
            own = {k[len(slot.prefix):] for k in sd if k.startswith(slot.prefix)}
            assert set(build_model(config_from_state_dict({k: sd[slot.prefix + k] for k in own})).state_dict()) == own


@pytest.mark.parametrize("kind", ["clip_l", "open_clip_h", "open_clip_bigg"])
def test_config_from_state_dict_reads_the_real_sizes_back(kind):
    with torch.device("meta"):
        sd = build_model(full_config(kind)).state_dict()
    assert config_from_state_dict(sd) == full_config(kind)


def test_full_state_dict_shapes_match_the_published_models():
    with torch.device("meta"):
        h = build_model(full_config("open_clip_h")).state_dict()
        g = build_model(full_config("open_clip_bigg")).state_dict()
        l_ = build_model(full_config("clip_l")).state_dict()
    assert h["text_projection"].shape == (1024, 1024)
    assert h["transformer.resblocks.23.attn.in_proj_weight"].shape == (3072, 1024)
    assert g["text_projection"].shape == (1280, 1280)
    assert g["transformer.resblocks.31.mlp.c_fc.weight"].shape == (5120, 1280)
    assert l_["encoder.layers.11.mlp.fc1.weight"].shape == (3072, 768)
    assert l_["embeddings.token_embedding.weight"].shape == (49408, 768)


def test_missing_and_unexpected_keys_are_named_in_the_error():
    sd = text_encoder_state_dicts("sd1")
    gone = "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.bias"
    extra = "cond_stage_model.transformer.text_model.encoder.layers.0.mystery.weight"
    broken = {k: v for k, v in sd.items() if k != gone} | {extra: torch.zeros(1)}
    report = check_keys("sd1", broken)
    assert report.missing == [gone] and report.unexpected == [extra]
    with pytest.raises(TextEncoderKeyError, match=r"1 missing: .*layers\.1\.mlp\.fc2\.bias.*1 unexpected: .*mystery"):
        build_text_encoder("sd1", broken)


def test_a_projected_pooled_output_requires_text_projection():
    sd = text_encoder_state_dicts("sdxl_refiner")
    del sd["conditioner.embedders.0.model.text_projection"]
    assert check_keys("sdxl_refiner", sd).missing == ["conditioner.embedders.0.model.text_projection"]


def test_a_checkpoint_without_text_encoder_is_reported_missing_everything():
    report = check_keys("sdxl", {"model.diffusion_model.out.0.weight": torch.zeros(1)})
    assert len(report.missing) == len(report.expected) > 300
    assert report.missing[0].startswith("conditioner.embedders.")


def test_position_ids_and_logit_scale_are_accepted_and_ignored():
    sd = text_encoder_state_dicts("sdxl")
    sd["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] = torch.arange(77.0)[None]
    sd["conditioner.embedders.1.model.logit_scale"] = torch.tensor(4.6)
    report = check_keys("sdxl", sd)
    assert report.unexpected == [] and len(report.ignored) == 2
    build_text_encoder("sdxl", sd)


def test_sd1_files_without_the_text_model_prefix_load():
    sd = text_encoder_state_dicts("sd1")
    legacy = {k.replace("text_model.", ""): v for k, v in sd.items()}
    a, _ = build_text_encoder("sd1", sd).encode("a cat")
    b, _ = build_text_encoder("sd1", legacy).encode("a cat")
    assert torch.equal(a, b)


def test_weights_keep_the_file_dtype_unless_told_and_outputs_are_float32():
    sd = text_encoder_state_dicts("sd2", dtype=torch.bfloat16)
    enc = build_text_encoder("sd2", sd)
    assert enc.dtype == torch.bfloat16
    cond, pooled = enc.encode("a cat")
    assert cond.dtype == pooled.dtype == torch.float32
    assert build_text_encoder("sd2", sd, dtype=torch.float32).dtype == torch.float32


def test_random_weights_are_reproducible_by_seed_and_differ_between_sdxl_encoders():
    a = text_encoder_state_dicts("sdxl", seed=1)
    b = text_encoder_state_dicts("sdxl", seed=1)
    c = text_encoder_state_dicts("sdxl", seed=2)
    key = "conditioner.embedders.1.model.token_embedding.weight"
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a[key], c[key])
    l_tab = a["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"]
    assert not torch.equal(l_tab, a[key])
    assert a[key].shape == (49408, 32)


def test_sd_text_encoder_is_built_for_each_family():
    for family, width, pooled in [("sd1", 32, 32), ("sd2", 32, 40), ("sdxl", 64, 40), ("sdxl_refiner", 32, 40)]:
        enc = build_text_encoder(family, text_encoder_state_dicts(family))
        assert isinstance(enc, SDTextEncoder)
        cond, pool = enc.encode("a cat")
        assert cond.shape == (1, 77, width) and pool.shape == (1, pooled)
