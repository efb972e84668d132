"""Single-file checkpoints load as they are: the family and prediction type are recognised, the
weights keep the file's dtype and compute what the writer's modules compute, and damaged or
foreign files give clear errors that name the file (and never run code from a pickle)."""
from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch

from nodes.sd import text_encoders
from nodes.sd.checkpoint import (
    CheckpointError,
    detect_family,
    load_checkpoint,
    read_mapped,
    read_safetensors_header,
)
from nodes.sd.testing import (
    random_checkpoint_state_dict,
    random_unet,
    random_vae,
    save_safetensors,
    tiny_unet_config,
    write_random_checkpoint,
)
from nodes.sd.vae import tiny_config as tiny_vae_config
from numerics import rel_err

FAMILIES = ["sd1", "sd2", "sdxl", "sdxl_refiner"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One tiny random fp32 checkpoint per family, with no prediction metadata."""
    root = tmp_path_factory.mktemp("ckpt")
    return {f: write_random_checkpoint(root / f"{f}.safetensors", f, prediction=None, seed=3) for f in FAMILIES}


# -------------------------------------------------------------------------------- recognition


@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_detected_from_keys_and_shapes(files, family):
    loaded = load_checkpoint(files[family])
    assert loaded.family == family
    assert loaded.model.family == family
    assert loaded.latent_scale == (0.13025 if family.startswith("sdxl") else 0.18215)
    assert (loaded.model.adm_fn is not None) == family.startswith("sdxl")


def test_unet_only_state_dict_is_told_apart_by_cross_attention_width():
    with torch.device("meta"):
        from nodes.sd.unet import UNetModel, full_config

        sd1 = {"model.diffusion_model." + k: v for k, v in UNetModel(full_config("sd1")).state_dict().items()}
        sd2 = {"model.diffusion_model." + k: v for k, v in UNetModel(full_config("sd2")).state_dict().items()}
    assert detect_family("x.safetensors", sd1) == "sd1"
    assert detect_family("x.safetensors", sd2) == "sd2"


def test_prediction_defaults_to_eps_without_any_hint(files):
    loaded = load_checkpoint(files["sd1"])
    assert (loaded.prediction, loaded.prediction_source) == ("eps", "default")
    assert loaded.model.model_sampling.prediction == "eps"


def test_prediction_from_an_explicit_parameter_wins(tmp_path):
    path = write_random_checkpoint(tmp_path / "m.safetensors", "sd2", prediction="eps")
    loaded = load_checkpoint(path, prediction="v")
    assert (loaded.prediction, loaded.prediction_source) == ("v", "param")
    assert loaded.model.model_sampling.prediction == "v"


@pytest.mark.parametrize("stored, expected", [("v", "v"), ("epsilon", "eps"), ("v_prediction", "v")])
def test_prediction_from_modelspec_metadata(tmp_path, stored, expected):
    path = write_random_checkpoint(tmp_path / "m.safetensors", "sd2", prediction=None,
                                   metadata={"modelspec.prediction_type": stored})
    loaded = load_checkpoint(path)
    assert (loaded.prediction, loaded.prediction_source) == (expected, "metadata")


def test_prediction_from_a_v_pred_marker_key(tmp_path):
    path = write_random_checkpoint(tmp_path / "m.safetensors", "sdxl", prediction=None,
                                   extra_tensors={"v_pred": torch.tensor([])})
    loaded = load_checkpoint(path)
    assert (loaded.prediction, loaded.prediction_source) == ("v", "marker key")


def test_prediction_from_an_a1111_sidecar_yaml(tmp_path):
    path = write_random_checkpoint(tmp_path / "v2-1_768.safetensors", "sd2", prediction=None)
    (tmp_path / "v2-1_768.yaml").write_text(
        'model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    parameterization: "v"\n'
    )
    loaded = load_checkpoint(path)
    assert (loaded.prediction, loaded.prediction_source) == ("v", "sidecar yaml")


def test_sidecar_yaml_without_parameterization_means_eps(tmp_path):
    path = write_random_checkpoint(tmp_path / "m.safetensors", "sd2", prediction=None)
    (tmp_path / "m.yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert load_checkpoint(path).prediction_source == "sidecar yaml"
    assert load_checkpoint(path).prediction == "eps"


def test_metadata_outranks_marker_key_and_sidecar(tmp_path):
    path = write_random_checkpoint(tmp_path / "m.safetensors", "sd2", prediction="eps",
                                   extra_tensors={"v_pred": torch.tensor([])})
    (tmp_path / "m.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert load_checkpoint(path).prediction == "eps"


def test_unsupported_prediction_metadata_is_an_error(tmp_path):
    path = write_random_checkpoint(tmp_path / "m.safetensors", "sd1", prediction=None,
                                   metadata={"modelspec.prediction_type": "flow"})
    with pytest.raises(CheckpointError, match="flow"):
        load_checkpoint(path)


# -------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_files_keep_their_dtype(tmp_path, dtype):
    path = write_random_checkpoint(tmp_path / "m.safetensors", "sdxl", dtype=dtype)
    loaded = load_checkpoint(path)
    assert loaded.file_dtype == loaded.dtype == dtype
    for name, module in loaded.modules().items():
        assert {p.dtype for p in module.parameters()} == {dtype}, name


def test_weights_convert_when_a_compute_dtype_is_asked_for(tmp_path):
    path = write_random_checkpoint(tmp_path / "m.safetensors", "sd1", dtype=torch.float16)
    loaded = load_checkpoint(path, dtype=torch.float32)
    assert loaded.file_dtype == torch.float16
    assert {p.dtype for m in loaded.modules().values() for p in m.parameters()} == {torch.float32}


def test_loaded_weights_are_exactly_the_written_ones(files):
    written = random_checkpoint_state_dict("sdxl", seed=3)
    loaded = load_checkpoint(files["sdxl"])
    got = {"model.diffusion_model." + k: v for k, v in loaded.unet.state_dict().items()}
    got.update({"first_stage_model." + k: v for k, v in loaded.vae.model.state_dict().items()})
    for slot in text_encoders.family_slots("sdxl"):
        got.update({slot.prefix + k: v for k, v in loaded.text_encoder.models[slot.name].state_dict().items()})
    assert set(got) == set(written)
    assert all(torch.equal(got[k], written[k]) for k in written)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_loaded_unet_and_vae_compute_what_the_writers_modules_compute(files, family):
    text_sd = text_encoders.text_encoder_state_dicts(family, tiny=True, seed=3 + 2)
    unet = random_unet(tiny_unet_config(family, text_sd), seed=3)
    vae = random_vae(tiny_vae_config(family), seed=3 + 1)
    loaded = load_checkpoint(files[family])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    context = torch.randn(1, 77, unet.config.context_dim, generator=g)
    y = torch.randn(1, unet.config.adm_in_channels, generator=g) if unet.config.adm_in_channels else None
    t = torch.tensor([500.0])
    with torch.no_grad():  # equal weights; memory alignment may pick other kernels, hence 1e-6
        assert rel_err(loaded.unet(x, t, context, y), unet(x, t, context, y)) <= 1e-6
        assert rel_err(loaded.vae.model.decode(x), vae.decode(x)) <= 1e-6


def test_loaded_text_encoder_computes_what_the_written_weights_compute(files):
    reference = text_encoders.build_text_encoder("sdxl", random_checkpoint_state_dict("sdxl", seed=3))
    loaded = load_checkpoint(files["sdxl"])
    ours, ours_pooled = loaded.text_encoder.encode("a red circle on a blue background")
    ref, ref_pooled = reference.encode("a red circle on a blue background")
    assert rel_err(ours, ref) <= 1e-6 and rel_err(ours_pooled, ref_pooled) <= 1e-6


def test_sd2_in_the_sgm_layout_loads_its_text_encoder(tmp_path):
    """SD2 files saved by Stability's sgm code keep OpenCLIP-H under conditioner.embedders.0.model."""
    sd = random_checkpoint_state_dict("sd2", seed=5)
    sgm = {k.replace("cond_stage_model.model.", "conditioner.embedders.0.model."): v for k, v in sd.items()}
    assert any(k.startswith("conditioner.embedders.0.model.") for k in sgm)
    path = save_safetensors(tmp_path / "sd2-sgm.safetensors", sgm)
    loaded = load_checkpoint(path)
    assert loaded.family == "sd2" and loaded.text_encoder is not None
    ours, ours_pooled = loaded.text_encoder.encode("a white square on black")
    ref, ref_pooled = text_encoders.build_text_encoder("sd2", sd).encode("a white square on black")
    assert rel_err(ours, ref) <= 1e-6 and rel_err(ours_pooled, ref_pooled) <= 1e-6


def test_a_tiny_checkpoint_runs_end_to_end(files):
    loaded = load_checkpoint(files["sdxl"])
    context, pooled = loaded.text_encoder.encode("a square")
    y = loaded.model.encode_adm({"pooled_output": pooled, "width": 64, "height": 64}, 1, "cpu", torch.float32)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    denoised = loaded.model.apply_model(latent * 14.6, torch.tensor([14.6]), context, y)
    image = loaded.vae.decode(loaded.model.process_out(denoised))
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all()


def test_weights_only_pickle_checkpoints_load(tmp_path):
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": random_checkpoint_state_dict("sd1", seed=3), "global_step": 470000}, path)
    loaded = load_checkpoint(path)
    assert loaded.family == "sd1"
    assert torch.equal(loaded.vae.model.decoder.conv_in.weight,
                       random_checkpoint_state_dict("sd1", seed=3)["first_stage_model.decoder.conv_in.weight"])


# -------------------------------------------------------------------------------- bad input


def test_truncated_file_is_named_and_called_truncated(files, tmp_path):
    data = files["sd1"].read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="truncated") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_lying_header_length_is_reported(files, tmp_path):
    data = bytearray(files["sd1"].read_bytes())
    data[:8] = struct.pack("<Q", len(data) * 4)
    path = tmp_path / "liar.safetensors"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"announce a \d+-byte header") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_header_that_is_not_json_is_reported(tmp_path):
    body = b"{not json at all"
    path = tmp_path / "garbled.safetensors"
    path.write_bytes(struct.pack("<Q", len(body)) + body)
    with pytest.raises(CheckpointError, match="not JSON"):
        read_safetensors_header(path)


@pytest.mark.parametrize("shape, offsets, what", [
    ([2, 3], [0, 20], r"'w' \(F32 \[2, 3\]\) needs 24 bytes, its offsets span 20"),
    ([2, -3], [0, 24], r"'w' has shape \[2, -3\]"),
    ([2, "3"], [0, 24], r"'w' has shape \[2, '3'\]"),
])
def test_header_whose_shape_and_byte_range_disagree_is_reported(tmp_path, shape, offsets, what):
    body = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": offsets}}).encode()
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", len(body)) + body + bytes(24))
    with pytest.raises(CheckpointError, match="corrupt safetensors header: tensor " + what) as err:
        read_mapped(path)
    assert str(path) in str(err.value)


def test_random_bytes_are_not_a_safetensors_file(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="not a safetensors file") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_tiny_or_missing_files_are_reported(tmp_path):
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="only 0 bytes"):
        load_checkpoint(tmp_path / "empty.safetensors")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_removed_keys_are_counted_and_the_first_few_listed(tmp_path):
    sd = random_checkpoint_state_dict("sd1", seed=3)
    removed = sorted(k for k in sd if k.startswith("model.diffusion_model.output_blocks.2."))[:7]
    for k in removed:
        del sd[k]
    path = save_safetensors(tmp_path / "holes.safetensors", sd)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "7 missing key(s)" in message
    assert all(k in message for k in removed[:5])


def test_unexpected_keys_inside_a_component_are_reported(tmp_path):
    sd = random_checkpoint_state_dict("sd1", seed=3)
    sd["first_stage_model.decoder.extra_layer.weight"] = torch.zeros(3)
    path = save_safetensors(tmp_path / "extra.safetensors", sd)
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): first_stage_model.decoder.extra_layer.weight"):
        load_checkpoint(path)


def test_unknown_architecture_lists_the_key_prefixes_found(tmp_path):
    tensors = {f"model.transformer.blocks.{i}.weight": torch.zeros(2) for i in range(3)}
    tensors["vae.decoder.conv_in.weight"] = torch.zeros(2)
    path = save_safetensors(tmp_path / "flux.safetensors", tensors)
    with pytest.raises(CheckpointError, match="unknown architecture") as err:
        load_checkpoint(path)
    assert "model.transformer (3)" in str(err.value) and "vae.decoder (1)" in str(err.value)
    assert str(path) in str(err.value)


class _Payload:
    """Unpickling this runs a shell command (what a malicious .ckpt does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"x": _Payload(marker)}}, f)
    with pytest.raises(CheckpointError, match="refused") as err:
        load_checkpoint(path)
    assert not marker.exists()
    assert str(path) in str(err.value)


def test_malicious_zip_pickle_from_torch_save_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": _Payload(marker)}}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_a_weight_of_the_wrong_shape_is_a_checkpoint_error_naming_file_and_component(tmp_path):
    sd = random_checkpoint_state_dict("sd1", seed=2)
    key = "first_stage_model.decoder.mid.attn_1.q.weight"
    sd[key] = sd[key][:, : sd[key].shape[1] // 2, 0, 0].contiguous()
    path = save_safetensors(tmp_path / "bad-shape.safetensors", sd)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "VAE weights do not fit" in message and "decoder.mid.attn_1.q.weight" in message
