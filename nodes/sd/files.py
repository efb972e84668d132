"""Reading model files: safetensors (memory-mapped, the header checked against the file) and, for
pickle-based files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``), ``torch.load(weights_only=True)`` only.

Every problem raises ``CheckpointError`` (a ``ValueError``) whose message names the file.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import torch

from nodegraph.errors import NodeError
from nodes.sd.mapped import Mapping as FileMapping

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
