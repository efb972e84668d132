"""The demo models ship inside the package, small, float16, and load like any other model file."""
import torch

from shape_analyser import ROOT

MODELS = ROOT / "nodes" / "models"
CHECKPOINT = MODELS / "checkpoints" / "demo-shapes.safetensors"
UPSCALER = MODELS / "upscale_models" / "demo-shapes-2x.safetensors"


def test_both_files_together_weigh_at_most_20_mb():
    assert CHECKPOINT.stat().st_size + UPSCALER.stat().st_size <= 20 * 1024 * 1024


def test_weights_are_stored_in_float16():
    from safetensors import safe_open

    for path in (CHECKPOINT, UPSCALER):
        with safe_open(str(path), framework="pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert dtypes == {"F16"}, (path, dtypes)


def test_the_checkpoint_loader_recognises_an_sd1_eps_model_with_the_real_tokenizer_vocabulary():
    from nodes.sd.checkpoint import load_checkpoint

    demo = load_checkpoint(CHECKPOINT)
    assert (demo.family, demo.prediction, demo.latent_scale) == ("sd1", "eps", 0.18215)
    encoder = demo.text_encoder.models["l"]
    assert encoder.config.vocab_size == 49408 and encoder.config.context_length == 77
    assert demo.unet.config.context_dim == encoder.config.width
    assert demo.vae.downscale == 8 and demo.vae.config.embed_dim == 4


def test_the_upscaler_is_a_2x_compact_model_for_spandrel():
    from nodes.sd.upscale import load_upscale_model

    model = load_upscale_model(UPSCALER)
    assert (model.architecture, model.scale) == ("Compact", 2)
    out = model(torch.rand(1, 3, 16, 16))
    assert out.shape == (1, 3, 32, 32)


def test_the_packaged_models_folder_lists_both_by_their_names():
    from nodes.folders import ModelFolders

    folders = ModelFolders(env={}, include_user_dirs=False)
    assert "demo-shapes.safetensors" in folders.list("checkpoints")
    assert "demo-shapes-2x.safetensors" in folders.list("upscale_models")


def test_every_vae_group_norm_normalises_at_least_two_channels_per_group():
    """With one channel per group a group norm removes each channel's spatial mean, so a flat colour
    cannot pass it; the 32-channel VAE learnt to carry colour in a mark at the bottom-right corner."""
    from nodes.sd.checkpoint import load_checkpoint
    from nodes.sd.vae import GroupNorm

    norms = [m for m in load_checkpoint(CHECKPOINT).vae.model.modules() if isinstance(m, GroupNorm)]
    assert norms and min(m.num_channels // m.num_groups for m in norms) >= 2
