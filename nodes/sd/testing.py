"""Random-weight checkpoints in the real single-file layout, for tests and benchmarks.

``write_random_checkpoint(path, "sdxl")`` writes a ``.safetensors`` file with the keys, shapes and
metadata conventions of a real SD1.x / SD2.x / SDXL / SDXL-refiner checkpoint: U-Net under
``model.diffusion_model.``, VAE under ``first_stage_model.``, text encoders under their family's
prefixes. The loader reads it through the same code path as a downloaded file.

Tiny files (the default) take their sizes from each component's ``tiny_config``; the U-Net's
context and ``adm`` widths follow the tiny text encoders, so a tiny checkpoint runs end to end
(prompt → image). Full-size files use the real configs (SD1.5: ~1.1 B parameters; in fp16 ~2 GB).
"""
from __future__ import annotations

import dataclasses
import json
import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import torch
from torch import nn

from nodes.sd import text_encoders, unet, vae

_DTYPE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}

PREDICTION_METADATA = {"eps": "epsilon", "v": "v"}


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` as a safetensors file, streaming one tensor at a time.

    Unlike ``safetensors.torch.save_file`` this never builds a second in-memory copy of the data,
    so a 2 GB checkpoint needs no extra 2 GB to be written.
    """
    path = Path(path)
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        if t.dtype not in _DTYPE_NAMES:
            raise ValueError(f"save_safetensors: tensor {name!r} has unsupported dtype {t.dtype}")
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in names:
            t = tensors[name].detach().cpu().contiguous().reshape(-1)
            if t.numel():
                f.write(memoryview(t.view(torch.uint8).numpy()))
    os.replace(tmp, path)
    return path


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run module construction with torch's global RNG seeded, restoring it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def randomize_(module: nn.Module, seed: int, dtype: torch.dtype) -> nn.Module:
    """PyTorch's default init plus noise on every 1-D parameter (so no norm is the identity and no bias
    is zero: a weight loaded into the wrong place changes the output), then converted to ``dtype``
    parameter by parameter (never two full copies)."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
            p.data = p.data.to(dtype)
        for b in module.buffers():
            if b.is_floating_point():
                b.data = b.data.to(dtype)
    return module.eval().requires_grad_(False)


def random_vae(config: vae.VAEConfig | None = None, seed: int = 0, dtype: torch.dtype = torch.float32) -> vae.AutoencoderKL:
    """A randomly initialised AutoencoderKL (tiny by default)."""
    with _seeded(seed):
        model = vae.AutoencoderKL(config or vae.tiny_config())
    return randomize_(model, seed, dtype)


def random_unet(config: unet.UNetConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> unet.UNetModel:
    """A randomly initialised U-Net for ``config``."""
    with _seeded(seed):
        model = unet.UNetModel(config)
    return randomize_(model, seed, dtype)


def tiny_unet_config(family: str, text_sd: Mapping[str, torch.Tensor]) -> unet.UNetConfig:
    """The family's tiny U-Net with context and adm widths matching the given text encoders."""
    widths, pooled = 0, None
    for slot in text_encoders.family_slots(family):
        table = text_sd.get(slot.prefix + "embeddings.token_embedding.weight")
        if table is None:
            table = text_sd[slot.prefix + "token_embedding.weight"]
        widths += table.shape[1]
        projection = text_sd.get(slot.prefix + "text_projection")
        if slot.pooled == "projected" and projection is not None:
            pooled = projection.shape[1]
    overrides: dict[str, object] = {"context_dim": widths}
    full_adm = unet.full_config(family).adm_in_channels
    if full_adm is not None:
        numbers = 6 if family == "sdxl" else 5  # sizes/crops (+ target size or aesthetic score)
        overrides["adm_in_channels"] = pooled + numbers * unet.ADM_SCALAR_DIM
    return unet.tiny_config(family, **overrides)


def random_checkpoint_state_dict(family: str, *, tiny: bool = True, dtype: torch.dtype = torch.float32,
                                 seed: int = 0, in_channels: int = 4) -> dict[str, torch.Tensor]:
    """All tensors of a random single-file checkpoint of ``family`` under their full keys (``in_channels``
    9: an inpainting U-Net, 8: an InstructPix2Pix one)."""
    text_sd = text_encoders.text_encoder_state_dicts(family, tiny=tiny, seed=seed + 2, dtype=dtype)
    unet_config = tiny_unet_config(family, text_sd) if tiny else unet.full_config(family)
    unet_config = dataclasses.replace(unet_config, in_channels=in_channels)
    vae_config = vae.tiny_config(family) if tiny else vae.full_config(family)
    out: dict[str, torch.Tensor] = {}
    model = random_unet(unet_config, seed, dtype)
    out.update(("model.diffusion_model." + k, v) for k, v in model.state_dict().items())
    del model
    model = random_vae(vae_config, seed + 1, dtype)
    out.update(("first_stage_model." + k, v) for k, v in model.state_dict().items())
    del model
    out.update(text_sd)
    return out


def write_random_checkpoint(
    path: str | os.PathLike,
    family: str,
    *,
    tiny: bool = True,
    dtype: torch.dtype = torch.float32,
    prediction: str | None = "eps",
    seed: int = 0,
    metadata: Mapping[str, str] | None = None,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    in_channels: int = 4,
) -> Path:
    """Write a random-weight single-file checkpoint of ``family`` to ``path``; returns the path.

    ``prediction`` ("eps" or "v") is recorded as safetensors metadata ``modelspec.prediction_type``
    ("epsilon"/"v"); None records nothing (the loader then falls back to its other routes).
    ``metadata`` adds metadata entries; ``extra_tensors`` adds tensors (e.g. a ``v_pred`` marker key).
    ``in_channels`` 9 writes an inpainting checkpoint (SD1.5-/SD2-/SDXL-inpainting), 8 an InstructPix2Pix one.
    The same ``family``/``tiny``/``dtype``/``seed``/``in_channels`` always give the same weights.
    """
    tensors = random_checkpoint_state_dict(family, tiny=tiny, dtype=dtype, seed=seed, in_channels=in_channels)
    if extra_tensors:
        tensors.update(extra_tensors)
    meta: dict[str, str] = {}
    if prediction is not None:
        if prediction not in PREDICTION_METADATA:
            raise ValueError(f"prediction must be 'eps', 'v' or None, got {prediction!r}")
        meta["modelspec.prediction_type"] = PREDICTION_METADATA[prediction]
    meta.update(metadata or {})
    return save_safetensors(path, tensors, meta)


def write_random_vae(path: str | os.PathLike, *, tiny: bool = True, dtype: torch.dtype = torch.float32,
                     seed: int = 0, prefix: str = "") -> Path:
    """Write a standalone VAE file (keys like ``encoder.conv_in.weight``, as ``vae-ft-mse-840000``)."""
    model = random_vae(vae.tiny_config() if tiny else vae.full_config(), seed, dtype)
    return save_safetensors(path, {prefix + k: v for k, v in model.state_dict().items()})


def write_random_upscaler(path: str | os.PathLike, *, seed: int = 0) -> Path:
    """Write a small random Real-ESRGAN compact 2x upscale model (8 features, 2 convolutions), as
    spandrel reads the real ones."""
    from spandrel.architectures.Compact import Compact

    with _seeded(seed):
        net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    return save_safetensors(path, net.state_dict())


def write_random_lora(path: str | os.PathLike, family: str, *, seed: int = 0, rank: int = 4,
                      scale: float = 0.05) -> Path:
    """Write a random kohya-format LoRA for the tiny ``family`` checkpoints of
    :func:`write_random_checkpoint`: every U-Net weight under
    its diffusers name (as SD1.5 LoRAs name them), every text-encoder attention/MLP weight under
    transformers' CLIP names (``lora_te_`` / ``lora_te1_`` / ``lora_te2_``); ``alpha`` = rank / 2."""
    from nodes.sd import lora as lora_module
    from nodes.sd.build import on_meta

    text_sd = text_encoders.text_encoder_state_dicts(family, tiny=True)
    unet_model = on_meta(lambda: unet.UNetModel(tiny_unet_config(family, text_sd)))
    targets: dict[str, tuple[int, ...]] = {}
    params = dict(unet_model.named_parameters())
    for key, target in lora_module.unet_targets(unet_model, unet_model.config).items():
        if key != "lora_unet_" + target.param[: -len(".weight")].replace(".", "_"):  # the diffusers name
            targets[key] = tuple(params[target.param].shape)
    encoder = text_encoders.build_text_encoder(family, text_sd)
    for slot, (prefix, *_) in lora_module.TEXT_PREFIXES[family].items():
        model = encoder.models[slot]
        weights = dict(model.named_parameters())
        for key, target in lora_module.text_targets(model, prefix).items():
            shape = tuple(weights[target.param].shape)
            targets[key] = (shape[1], shape[1]) if target.rows else shape
    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for key, shape in sorted(targets.items()):
        out_ch, in_ch, *kernel = shape
        tensors[key + ".lora_down.weight"] = torch.randn(rank, in_ch, *kernel, generator=g) * scale
        tensors[key + ".lora_up.weight"] = torch.randn(out_ch, rank, *[1] * len(kernel), generator=g) * scale
        tensors[key + ".alpha"] = torch.tensor(rank / 2)
    return save_safetensors(path, tensors)
