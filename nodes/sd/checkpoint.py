"""Single-file Stable Diffusion checkpoints: read, recognise, build.

``load_checkpoint(path)`` reads a ``.safetensors`` file (memory-mapped) — or a pickle-based
``.ckpt``/``.pt`` file through ``torch.load(weights_only=True)`` only — recognises the family
(SD1.x, SD2.x, SDXL, SDXL refiner) from its keys and tensor shapes, works out whether the U-Net
predicts ε or v, and builds the U-Net, VAE and text encoders with the file's tensors as their
weights (modules are created on the meta device and take the tensors over: no second copy).

Every problem raises ``CheckpointError`` (a ``ValueError``) whose message names the file.
"""
from __future__ import annotations

import json
import math
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nodegraph.errors import NodeError

import torch
from torch import nn

from nodes.sd import text_encoders, unet as unet_module, vae as vae_module
from nodes.sd import build
from nodes.sd.mapped import Mapping as FileMapping
from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.memory import module_bytes
from nodes.sd.model_sampling import ModelSamplingDiscrete

FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner")
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_MAX_HEADER = 100 * 1024 * 1024
_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


class CheckpointError(NodeError, ValueError):
    """A model file that cannot be loaded; the message names the file and says why."""

    def __init__(self, path: str | os.PathLike, message: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


# ----------------------------------------------------------------------------------------------
# Reading tensors


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, dict], dict[str, str]]:
    """Validate a safetensors file's header; return (tensor entries, metadata).

    Checks what a damaged or foreign file gets wrong: the 8-byte header length, the JSON header,
    that every tensor's byte range lies inside the file and matches its dtype and shape.
    """
    header, metadata, _ = _read_header(Path(path))
    return header, metadata


def _read_header(path: Path) -> tuple[dict[str, dict], dict[str, str], int]:
    """:func:`read_safetensors_header` plus where the data section starts in the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(path, f"not a safetensors file: only {size} bytes long")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > _MAX_HEADER:
                raise CheckpointError(
                    path,
                    f"not a safetensors file, or a truncated one: its first 8 bytes announce a {n}-byte header, "
                    f"but the file has {size - 8} bytes after them",
                )
            raw = f.read(n)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"not a safetensors file: its {n}-byte header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "not a safetensors file: its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(path, "corrupt safetensors header: __metadata__ is not an object")
    data_size = size - 8 - n
    for name, entry in header.items():
        ok = (isinstance(entry, dict) and entry.get("dtype") in _SAFETENSORS_DTYPES
              and isinstance(entry.get("shape"), list) and isinstance(entry.get("data_offsets"), list)
              and len(entry["data_offsets"]) == 2)
        if not ok:
            raise CheckpointError(path, f"corrupt safetensors header: bad entry for tensor {name!r}: {entry!r:.200}")
        begin, end = entry["data_offsets"]
        if end > data_size:
            raise CheckpointError(
                path,
                f"truncated file: tensor {name!r} needs bytes {begin}..{end} of the data section, "
                f"which has only {data_size} bytes; download or copy the file again",
            )
        if begin > end:
            raise CheckpointError(path, f"corrupt safetensors header: tensor {name!r} has offsets {begin}..{end}")
        shape = entry["shape"]
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CheckpointError(path, f"corrupt safetensors header: tensor {name!r} has shape {shape!r:.200}")
        if math.prod(shape) * _SAFETENSORS_DTYPES[entry["dtype"]].itemsize != end - begin:
            raise CheckpointError(
                path,
                f"corrupt safetensors header: tensor {name!r} ({entry['dtype']} {shape}) needs "
                f"{math.prod(shape) * _SAFETENSORS_DTYPES[entry['dtype']].itemsize} bytes, its offsets span {end - begin}",
            )
    return header, {str(k): str(v) for k, v in metadata.items()}, 8 + n


def _file_kind(path: Path) -> str:
    """'safetensors', 'zip-pickle' or 'pickle', from the file's first bytes (not its name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    if head.startswith(b"PK\x03\x04"):
        return "zip-pickle"
    if head[:1] == b"\x80" and path.suffix.lower() in PICKLE_SUFFIXES:
        return "pickle"
    return "safetensors"


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors of a model file on the CPU in their stored dtypes, and its metadata.

    Safetensors files are memory-mapped. Pickle-based files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``)
    load with ``torch.load(weights_only=True)``, which refuses any object that is not a tensor or a
    plain container: nothing in the file can run code.
    """
    sd, metadata, _ = read_mapped(path)
    return sd, metadata


def read_mapped(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str], FileMapping | None]:
    """:func:`read_state_dict` plus the file's mapping (None when the tensors are not
    memory-mapped: pickle files).

    A safetensors file is mapped once and every tensor is a view of its bytes, made from the
    validated header: making them reads nothing. (``safetensors.safe_open(...).get_tensor`` reads
    the pages of each tensor as it makes it, 1.5 GB of a cold 2.1 GB SD1.5 file, one tensor after
    another on the calling thread; here the whole read happens in :meth:`FileMapping.fault_in`
    while the modules are built, or in the dtype conversion.)
    """
    path = Path(path)
    kind = _file_kind(path)
    if kind == "safetensors":
        header, metadata, base = _read_header(path)
        try:
            mapping = FileMapping(path)
        except (OSError, ValueError) as exc:
            raise CheckpointError(path, f"cannot map the file ({exc})") from exc
        sd = {name: mapping.tensor(base + entry["data_offsets"][0], entry["data_offsets"][1] - entry["data_offsets"][0],
                                   _SAFETENSORS_DTYPES[entry["dtype"]], entry["shape"])
              for name, entry in header.items()}
        return sd, metadata, mapping
    return _read_pickle(path), {}, None


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    obj = load_pickle(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"expected a dict of tensors, found a {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(path, "the file holds no tensors")
    return tensors


def load_pickle(path: Path) -> Any:
    """What a pickle-based file holds, through ``torch.load(weights_only=True)`` only (tensors and
    plain containers); anything else is refused with a CheckpointError naming the file."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol-version chatter from the weights-only unpickler
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "Unsupported" in line), "")
        raise CheckpointError(
            path,
            "refused: this pickle file holds objects other than tensors, and unpickling them could run "
            "arbitrary code, so NodeGraph does not. Only weights-only pickles load; convert the file to "
            ".safetensors with a tool you trust, or use a .safetensors release of the model."
            + (f" ({detail})" if detail else ""),
        ) from None
    except Exception as exc:  # truncated zip, not a pickle at all, …
        raise CheckpointError(path, f"cannot read this pickle-based file: {exc}") from None
    return obj


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
    if family == "sd2":
        bias = sd.get(UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias")
        if bias is not None:
            return ("v" if torch.std(bias.float(), unbiased=False) > 0.09 else "eps"), "weight statistics"
    return "eps", "default"


# ----------------------------------------------------------------------------------------------
# Building models


def _component(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


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


def sdxl_adm_fn(cond: dict, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """SDXL's ``y`` from a conditioning dict, with ComfyUI's defaults (768×768, no crop, target = size)."""
    pooled = _pooled(cond, batch, device)
    width, height = cond.get("width", 768), cond.get("height", 768)
    y = unet_module.sdxl_adm(
        pooled, width, height, cond.get("crop_w", 0), cond.get("crop_h", 0),
        cond.get("target_width", width), cond.get("target_height", height),
    )
    return y.to(device, dtype)


def sdxl_refiner_adm_fn(cond: dict, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The refiner's ``y``: ComfyUI's defaults are 768×768, no crop, aesthetic score 6 (2.5 for a
    conditioning marked ``prompt_type: "negative"``)."""
    pooled = _pooled(cond, batch, device)
    default_score = 2.5 if cond.get("prompt_type") == "negative" else 6.0
    y = unet_module.sdxl_refiner_adm(
        pooled, cond.get("width", 768), cond.get("height", 768), cond.get("crop_w", 0), cond.get("crop_h", 0),
        cond.get("aesthetic_score", default_score),
    )
    return y.to(device, dtype)


def _pooled(cond: dict, batch: int, device: torch.device) -> torch.Tensor:
    pooled = cond.get("pooled_output")
    if pooled is None:
        raise ValueError("SDXL conditioning needs 'pooled_output' (encode the prompt with an SDXL text encoder)")
    pooled = pooled.to(device=device, dtype=torch.float32)
    if pooled.shape[0] != batch:
        pooled = pooled[:1].expand(batch, -1)
    return pooled


_ADM_FNS = {"sdxl": sdxl_adm_fn, "sdxl_refiner": sdxl_refiner_adm_fn}


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
    vae_dtype = vae_dtype or dtype
    text_dtype = text_dtype or dtype
    keys = list(sd)
    # Weights used as stored stay in the mapping: a thread reads it all in while the modules are
    # built. Weights converted to another dtype are read by the conversion, and their pages released
    # as it goes (build.convert), so the file is never resident beside the copy.
    as_stored = (device is None or torch.device(device).type == "cpu") and all(
        d in (None, stored) for d in (dtype, vae_dtype, text_dtype))
    reading = mapping.fault_in_background() if mapping is not None and as_stored else None
    try:
        # Split the components off (moving, not copying, the tensors) and collect every component's
        # key problems before raising, so that one message lists them all.
        unet_sd = {k[len(UNET_PREFIX):]: sd.pop(k) for k in keys if k.startswith(UNET_PREFIX)}
        vae_sd = vae_module.vae_state_dict({k: sd.pop(k) for k in keys if k.startswith(VAE_PREFIX)})
        try:
            unet_config = unet_module.config_from_state_dict(unet_sd)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(path, f"{family} U-Net weights are incomplete or damaged: {exc}") from None
        problems: list[str] = []
        vae_config = None
        if vae_sd:  # a file without VAE weights loads (as in ComfyUI); its VAE output is empty
            try:
                vae_config = vae_module.config_from_state_dict(vae_sd)
            except (ValueError, KeyError) as exc:
                problems.append(f"VAE weights are incomplete or damaged: {exc}")
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
    except BaseException:
        if mapping is not None:
            mapping.stop()
        raise
    finally:
        if reading is not None:
            reading.join()

    model = DiffusionModel(
        unet_model, ModelSamplingDiscrete(pred), family, vae_module.latent_scale(family), _ADM_FNS.get(family)
    )
    return LoadedCheckpoint(
        path=path, family=family, prediction=pred, prediction_source=source, model=model,
        vae=vae_module.VAE(vae_model, family) if vae_model is not None else None, text_encoder=text,
        dtype=next(unet_model.parameters()).dtype, file_dtype=stored, metadata=metadata,
    )


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
