"""Loading Stable Diffusion models: single-file checkpoints and standalone VAEs — read, recognise,
build, wire — and the ModelManager that keeps them loaded.

``load_checkpoint(path)`` reads a ``.safetensors`` file (memory-mapped) — or a pickle-based
``.ckpt``/``.pt`` file through ``torch.load(weights_only=True)`` only (:mod:`nodes.sd.files`) —
recognises the family (SD1.x, SD2.x, SDXL, SDXL refiner) from its keys and tensor shapes, works out
whether the U-Net predicts ε or v, builds the U-Net, VAE and text encoders with the file's tensors
as their weights (modules are created on the meta device and take the tensors over: no second
copy) and wires the U-Net for sampling the family's way (``DiffusionModel.for_family``).

``ModelManager`` is :class:`~nodes.sd.memory.ModelMemory` (residency and placement) that loads
checkpoints and VAEs: one load per file version and precision.

Every problem raises ``CheckpointError`` (a ``ValueError``) whose message names the file.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from nodes.sd import text_encoders, unet as unet_module, vae as vae_module
from nodes.sd import build
from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.files import (CheckpointError, load_pickle, read_mapped, read_safetensors_header,  # noqa: F401
                            read_state_dict)  # (read through this module too: lora, embeddings' callers, tests, bench)
from nodes.sd.memory import DtypeChoice, ModelMemory, module_bytes
from nodes.sd.preview_fit import projection_for

FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner")
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."


# ----------------------------------------------------------------------------------------------
# Recognising the model


def top_level_prefixes(keys, depth: int = 1) -> list[str]:
    """Key prefixes up to ``depth`` dots, with counts, most common first: ``['model (686)', …]``."""
    counts = Counter(".".join(k.split(".")[:depth]) for k in keys)
    return [f"{p} ({n})" for p, n in counts.most_common()]


def _has_prefix(keys, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def detect_family(path: str | os.PathLike, sd: Mapping[str, torch.Tensor]) -> str:
    """The model family of a checkpoint's tensors, from key prefixes and U-Net shapes.

    SDXL and its refiner have ``label_emb`` (adm 2816 / 2560) and ``conditioner.embedders``; SD1 and
    SD2 do not and differ by text encoder (CLIP-L ``cond_stage_model.transformer`` vs OpenCLIP
    ``cond_stage_model.model``) or, in a U-Net-only file, by cross-attention width (768 / 1024).
    """
    keys = list(sd)
    if not _has_prefix(keys, UNET_PREFIX + "input_blocks."):
        found = ", ".join(top_level_prefixes(keys, 2)[:12]) or "no tensors at all"
        raise CheckpointError(
            path,
            f"unknown architecture: no Stable Diffusion U-Net ({UNET_PREFIX}input_blocks.*) in the file. "
            f"Key prefixes found: {found}. Supported: SD1.x, SD2.x, SDXL, SDXL refiner single-file checkpoints",
        )
    adm = sd.get(UNET_PREFIX + "label_emb.0.0.weight")
    if adm is not None:
        if _has_prefix(keys, "conditioner.embedders.1."):
            return "sdxl"
        if _has_prefix(keys, "conditioner.embedders.0.model."):
            return "sdxl_refiner"
        by_width = {2816: "sdxl", 2560: "sdxl_refiner"}.get(adm.shape[1])
        if by_width:
            return by_width
        raise CheckpointError(path, f"unknown architecture: a U-Net with a {adm.shape[1]}-wide label_emb "
                                    "(class/size embedding) and no SDXL text encoders")
    if _has_prefix(keys, "cond_stage_model.model.") or _has_prefix(keys, "conditioner.embedders.0.model."):
        return "sd2"
    if _has_prefix(keys, "cond_stage_model.transformer."):
        return "sd1"
    context = [v.shape[1] for k, v in sd.items() if k.startswith(UNET_PREFIX) and k.endswith("attn2.to_k.weight")]
    if context and context[0] in (768, 1024):
        return "sd1" if context[0] == 768 else "sd2"
    raise CheckpointError(
        path,
        f"unknown architecture: a U-Net without a recognisable text encoder "
        f"(cross-attention width {context[0] if context else 'none'}). Key prefixes found: "
        + ", ".join(top_level_prefixes(keys, 2)[:12]),
    )


_PREDICTION_NAMES = {"eps": "eps", "epsilon": "eps", "v": "v", "v_prediction": "v", "v-prediction": "v"}


def _prediction_name(path, value: str, where: str) -> str:
    name = _PREDICTION_NAMES.get(str(value).strip().lower())
    if name is None:
        raise CheckpointError(path, f"{where} asks for prediction type {value!r}; supported: eps (epsilon), v")
    return name


def detect_prediction(
    path: str | os.PathLike,
    family: str,
    sd: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str],
    explicit: str | None = None,
) -> tuple[str, str]:
    """(prediction, how it was found): "eps" or "v" and one of "param", "metadata", "marker key",
    "sidecar yaml", "weight statistics", "default".

    Routes in order: the explicit ``explicit`` argument; metadata ``modelspec.prediction_type``; a
    ``v_pred`` key; a ``<name>.yaml`` next to the file (A1111) with ``parameterization: "v"``; and,
    for SD2 only, ComfyUI's heuristic — the spread of one layer-norm bias near the output (std > 0.09
    means v). That last one says nothing on random weights: tests use the other routes.
    """
    path = Path(path)
    if explicit is not None and explicit != "auto":
        return _prediction_name(path, explicit, "the loader parameter"), "param"
    if "modelspec.prediction_type" in metadata:
        return _prediction_name(path, metadata["modelspec.prediction_type"], "metadata modelspec.prediction_type"), "metadata"
    if "v_pred" in sd:
        return "v", "marker key"
    yaml_path = path.with_suffix(".yaml")
    if yaml_path.is_file():
        import yaml

        try:
            config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(path, f"cannot read the sidecar config {yaml_path.name}: {exc}") from None
        params = ((config or {}).get("model") or {}).get("params") or {}
        return ("v" if params.get("parameterization") == "v" else "eps"), "sidecar yaml"
    first = sd.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if family == "sd2" and (first is None or first.shape[1] == 4):  # SD2 inpainting (9 channels) is ε (ComfyUI)
        bias = sd.get(UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias")
        if bias is not None:
            return ("v" if torch.std(bias.float(), unbiased=False) > 0.09 else "eps"), "weight statistics"
    return "eps", "default"


# ----------------------------------------------------------------------------------------------
# Building models


def _few(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f", … ({len(keys) - n} more)" if len(keys) > n else "")


def _key_problems(what: str, prefix: str, missing: list[str], unexpected: list[str]) -> list[str]:
    out = []
    if missing:
        out.append(f"{what}: {len(missing)} missing key(s): {_few([prefix + k for k in sorted(missing)])}")
    if unexpected:
        out.append(f"{what}: {len(unexpected)} unexpected key(s): {_few([prefix + k for k in sorted(unexpected)])}")
    return out


def fill_module(path: Path, what: str, make, tensors, dtype, device, mapping):
    """:func:`nodes.sd.build.fill_module`, with a weight of the wrong shape reported as a
    ``CheckpointError`` naming the file and the component."""
    try:
        return build.fill_module(make, tensors, dtype, device, mapping)
    except ValueError as exc:
        raise CheckpointError(path, f"{what} weights do not fit the architecture their other shapes describe: "
                                    f"{exc}") from None


def file_dtype(sd: Mapping[str, torch.Tensor]) -> torch.dtype:
    """The floating-point dtype holding most of the file's bytes (what "the file's dtype" means)."""
    sizes: Counter[torch.dtype] = Counter()
    for t in sd.values():
        if t.is_floating_point():
            sizes[t.dtype] += t.numel() * t.element_size()
    return sizes.most_common(1)[0][0] if sizes else torch.float32


@dataclass
class LoadedCheckpoint:
    """What ``CheckpointLoaderSimple`` gives the graph: MODEL, CLIP and VAE of one file."""

    path: Path
    family: str
    prediction: str  # "eps" or "v"
    prediction_source: str  # which route decided it (see detect_prediction)
    model: DiffusionModel  # U-Net + model sampling + latent scale, what samplers call
    vae: vae_module.VAE | None  # None when the file has no VAE weights
    text_encoder: text_encoders.SDTextEncoder | None  # None when the file has no text encoder
    dtype: torch.dtype  # dtype of the U-Net weights as loaded
    file_dtype: torch.dtype  # dtype the file stores its weights in
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def unet(self) -> unet_module.UNetModel:
        return self.model.unet  # type: ignore[return-value]

    @property
    def latent_scale(self) -> float:
        return self.model.latent_scale

    def modules(self) -> dict[str, nn.Module]:
        """The torch modules, by component name (for moving and measuring)."""
        out: dict[str, nn.Module] = {"unet": self.unet}
        if self.vae is not None:
            out["vae"] = self.vae.model
        if self.text_encoder is not None:
            out.update({f"text_{k}": m for k, m in self.text_encoder.models.items()})
        return out

    def memory_bytes(self) -> int:
        return sum(module_bytes(m) for m in self.modules().values())


def load_checkpoint(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    vae_dtype: torch.dtype | None = None,
    text_dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    prediction: str | None = None,
) -> LoadedCheckpoint:
    """Load a single-file SD1.x / SD2.x / SDXL / SDXL-refiner checkpoint.

    ``dtype`` is the U-Net's weight dtype (None: keep the file's); ``vae_dtype`` and ``text_dtype``
    default to ``dtype``. ``prediction`` ("eps"/"v") overrides what the file says. Weights land on
    ``device`` (default CPU). Raises ``CheckpointError`` naming the file for anything it cannot load.
    """
    path = Path(path)
    sd, metadata, mapping = read_mapped(path)
    family = detect_family(path, sd)
    pred, source = detect_prediction(path, family, sd, metadata, prediction)
    stored = file_dtype(sd)
    dtypes = (dtype, vae_dtype or dtype, text_dtype or dtype)
    # Weights used as stored stay in the mapping: a thread reads it all in while the modules are
    # built. Weights converted to another dtype are read by the conversion, and their pages released
    # as it goes (build.convert), so the file is never resident beside the copy.
    as_stored = (device is None or torch.device(device).type == "cpu") and all(d in (None, stored) for d in dtypes)
    reading = mapping.fault_in_background() if mapping is not None and as_stored else None
    try:
        unet_model, vae_model, text = _build(path, family, sd, dtypes, device, mapping)
    except BaseException:
        if mapping is not None:
            mapping.stop()
        raise
    finally:
        if reading is not None:
            reading.join()
    model = DiffusionModel.for_family(unet_model, family, pred)
    model.source = path.name
    vae = vae_module.VAE(vae_model, family) if vae_model is not None else None
    model.preview_projection = projection_for(vae, family, path)  # lazy: fitted if the VAE is not SD's
    return LoadedCheckpoint(
        path=path, family=family, prediction=pred, prediction_source=source, model=model, vae=vae,
        text_encoder=text, dtype=next(unet_model.parameters()).dtype, file_dtype=stored, metadata=metadata,
    )


def _build(path: Path, family: str, sd: dict[str, torch.Tensor], dtypes: tuple, device, mapping
           ) -> tuple[nn.Module, nn.Module | None, text_encoders.SDTextEncoder | None]:
    """The U-Net, VAE and text encoder of a checkpoint's tensors (``sd`` is emptied). Every
    component's key problems are collected before raising, so that one message lists them all."""
    dtype, vae_dtype, text_dtype = dtypes
    keys = list(sd)
    # Split the components off: moving, not copying, the tensors.
    unet_sd = {k[len(UNET_PREFIX):]: sd.pop(k) for k in keys if k.startswith(UNET_PREFIX)}
    vae_sd = vae_module.vae_state_dict({k: sd.pop(k) for k in keys if k.startswith(VAE_PREFIX)})
    try:
        unet_config = unet_module.config_from_state_dict(unet_sd)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(path, f"{family} U-Net weights are incomplete or damaged: {exc}") from None
    if unet_config.in_channels not in (4, 8, 9):
        raise CheckpointError(path, f"a {family} U-Net with {unet_config.in_channels} input channels; NodeGraph "
                                    "runs 4 (text-to-image), 9 (inpainting) and 8 (InstructPix2Pix)")
    vae_config, problems = _vae_config(vae_sd)
    unet_model, missing, unexpected = fill_module(path, "U-Net", lambda: unet_module.UNetModel(unet_config),
                                                  unet_sd, dtype, device, mapping)
    problems = _key_problems("U-Net", UNET_PREFIX, missing, unexpected) + problems
    vae_model = None
    if vae_config is not None:
        vae_model, missing, unexpected = fill_module(path, "VAE", lambda: vae_module.AutoencoderKL(vae_config),
                                                     vae_sd, vae_dtype, device, mapping)
        problems += _key_problems("VAE", VAE_PREFIX, missing, unexpected)
    with_text = text_encoders.has_text_encoder(family, keys)
    if problems and with_text:  # (build_text_encoder checks its own keys when all else is well)
        report = text_encoders.check_keys(family, sd)
        problems += _key_problems("text encoders", "", report.missing, report.unexpected)
    if problems:
        raise CheckpointError(path, f"{family} checkpoint does not match the {family} architecture: "
                              + "; ".join(problems))
    text = None
    if with_text:
        try:
            text = text_encoders.build_text_encoder(family, sd, dtype=text_dtype, device=device, mapping=mapping)
        except ValueError as exc:
            raise CheckpointError(path, str(exc)) from None
    sd.clear()
    return unet_model, vae_model, text


def _vae_config(vae_sd: dict[str, torch.Tensor]) -> tuple[vae_module.VAEConfig | None, list[str]]:
    """The VAE's config from its weights, or None and what is wrong with them (a file without VAE
    weights loads, as in ComfyUI: its VAE output is empty)."""
    if not vae_sd:
        return None, []
    try:
        return vae_module.config_from_state_dict(vae_sd), []
    except (ValueError, KeyError) as exc:
        return None, [f"VAE weights are incomplete or damaged: {exc}"]


def load_vae(path: str | os.PathLike, *, dtype: torch.dtype | None = None,
             device: torch.device | str | None = None) -> vae_module.VAE:
    """Load a standalone VAE file (LDM keys such as ``vae-ft-mse-840000`` / ``sdxl_vae``, keys under
    ``first_stage_model.``, or a diffusers-format ``AutoencoderKL``), or the VAE of a checkpoint."""
    path = Path(path)
    sd, _, mapping = read_mapped(path)
    vae_sd = vae_module.vae_state_dict(sd)
    if not vae_sd:
        raise CheckpointError(path, "no VAE weights found. Key prefixes found: " + ", ".join(top_level_prefixes(sd, 2)[:12]))
    sd.clear()
    try:
        config = vae_module.config_from_state_dict(vae_sd)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(path, f"VAE weights are incomplete or damaged: {exc}") from None
    model, missing, unexpected = fill_module(path, "VAE", lambda: vae_module.AutoencoderKL(config), vae_sd, dtype, device, mapping)
    if missing or unexpected:
        raise CheckpointError(path, "VAE weights do not match the architecture: " + "; ".join(_key_problems("VAE", "", missing, unexpected)))
    return vae_module.VAE(model)


def describe(loaded: LoadedCheckpoint) -> dict[str, Any]:
    """A short, JSON-friendly summary (for logs and the run summary)."""
    return {
        "file": str(loaded.path), "family": loaded.family, "prediction": loaded.prediction,
        "prediction_source": loaded.prediction_source, "dtype": str(loaded.dtype).removeprefix("torch."),
        "file_dtype": str(loaded.file_dtype).removeprefix("torch."), "bytes": loaded.memory_bytes(),
    }


class ModelManager(ModelMemory):
    """:class:`~nodes.sd.memory.ModelMemory` that loads checkpoints and standalone VAEs: the same
    file (path, size, modification time) in the same precision loads once and is shared.

    ``identity`` (the file's ``(resolved path, size, mtime_ns)``, when the caller has it) spares a
    stat of the file; ``on_load`` is called when the file is really read (not reused)."""

    def load_checkpoint(self, path: str | os.PathLike, *, dtype: DtypeChoice | torch.dtype | None = None,
                        prediction: str | None = None, identity: tuple[str, int, int] | None = None,
                        on_load: Callable[[], None] | None = None) -> LoadedCheckpoint:
        """A ``LoadedCheckpoint`` for ``path`` (see :func:`load_checkpoint`), reused while the file
        is unchanged. ``dtype`` None keeps the file's."""
        if isinstance(dtype, DtypeChoice):
            dtypes: tuple[Hashable, ...] = (dtype.unet, dtype.vae, dtype.text)
        else:
            dtypes = (dtype, dtype, dtype)

        def loader() -> LoadedCheckpoint:
            return load_checkpoint(path, dtype=dtypes[0], vae_dtype=dtypes[1], text_dtype=dtypes[2],
                                   device=self.offload_device, prediction=prediction)

        return self.load(path, loader, "checkpoint", dtypes, prediction, identity=identity, on_load=on_load)

    def load_vae(self, path: str | os.PathLike, *, dtype: torch.dtype | None = None,
                 identity: tuple[str, int, int] | None = None,
                 on_load: Callable[[], None] | None = None) -> vae_module.VAE:
        """A standalone VAE file (see :func:`load_vae`), reused while unchanged."""
        return self.load(path, lambda: load_vae(path, dtype=dtype, device=self.offload_device), "vae", dtype,
                         identity=identity, on_load=on_load)
