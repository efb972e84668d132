"""Textual-inversion embeddings: ``embedding:name`` in a prompt, with ComfyUI's semantics.

An embedding file holds one or more learned token vectors. Where a prompt says ``embedding:name``,
those vectors take the place of word tokens (they get the weight of the bracket they sit in, and
form one piece of the 77-token windows, see :mod:`nodes.sd.tokenizer`). As in ComfyUI:

- ``name`` is looked up in every folder of the ``embeddings`` model category and their sub-folders,
  as given or with ``.safetensors``, ``.pt`` or ``.bin`` appended; a name cannot leave the folder.
- The name ends at the first whitespace; when no file has that name, trailing commas are stripped
  and tried again (``embedding:bad_hands, blurry``), and the commas stay in the prompt as text.
- Which tensor of the file is used: A1111's ``string_to_param`` entry; else the entry named after
  the encoder (``clip_l``, ``clip_g``, ``clip_h``: SDXL files carry one per encoder); else the first
  tensor. A 1-D tensor is one vector, a 2-D one a vector per row.
- A name that no file matches is left out of the prompt with a warning; so is a vector whose width
  is not the encoder's (an SD1 embedding used with SDXL's OpenCLIP-G).

Unlike ComfyUI, a pickle-based file is read only with ``torch.load(weights_only=True)`` (ComfyUI
falls back to reading raw floats out of the zip); a file that cannot be read is an error naming it,
not a skipped word.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

PREFIX = "embedding:"
SUFFIXES = (".safetensors", ".pt", ".bin")
ENCODER_KEYS = {"l": "clip_l", "g": "clip_g", "h": "clip_h"}  # encoder slot → key in SDXL-style files


class EmbeddingError(ValueError):
    """An embedding file that exists but cannot be used; the message names the file."""


def _candidates(folders: Sequence[Path]) -> list[Path]:
    """Each folder, then its sub-folders (sorted, links followed), without repeats."""
    seen: set[str] = set()
    out: list[Path] = []
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for root, dirs, _ in os.walk(folder, followlinks=True):
            dirs.sort()
            key = os.path.normcase(os.path.realpath(root))
            if key not in seen:
                seen.add(key)
                out.append(Path(root))
    return out


def find_embedding(name: str, folders: Sequence[Path]) -> Path | None:
    """The file ``name`` refers to in ``folders`` (see the module docstring), or None."""
    if not name:
        return None
    for folder in _candidates(folders):
        base = os.path.abspath(folder)
        path = os.path.abspath(os.path.join(base, name))
        if os.path.commonpath((base, path)) != base:
            continue  # "../x" and absolute names stay out
        if os.path.isfile(path):
            return Path(path)
        for suffix in SUFFIXES:
            if os.path.isfile(path + suffix):
                return Path(path + suffix)
    return None


def read_embedding(path: Path, key: str | None) -> torch.Tensor:
    """The vectors ``[n, width]`` (float32) that ``path`` holds for the encoder ``key``."""
    from nodes.sd.checkpoint import CheckpointError, load_pickle, read_state_dict

    try:
        if path.suffix.lower() == ".safetensors":
            data: object = read_state_dict(path)[0]
        else:
            data = load_pickle(path)
    except CheckpointError as exc:
        raise EmbeddingError(f"embedding {exc}") from None
    tensor = None
    if isinstance(data, dict):
        params = data.get("string_to_param")
        if isinstance(params, dict) and params:
            tensor = next(iter(params.values()))
        elif key is not None and key in data:
            tensor = data[key]
        else:
            tensor = next((v for v in data.values() if isinstance(v, torch.Tensor)), None)
    if not isinstance(tensor, torch.Tensor) or tensor.dim() not in (1, 2) or not tensor.is_floating_point() \
            or tensor.numel() == 0:
        found = ", ".join(f"{k}: {tuple(v.shape)}" if isinstance(v, torch.Tensor) else f"{k}: {type(v).__name__}"
                          for k, v in list(data.items())[:6]) if isinstance(data, dict) else type(data).__name__
        raise EmbeddingError(f"{path}: not a textual-inversion embedding (expected a 1-D or 2-D float tensor "
                             f"under 'string_to_param', {key!r} or as the only entry; found {found})")
    return tensor.detach().reshape(-1, tensor.shape[-1]).float().clone()


class EmbeddingLibrary:
    """Embeddings found in ``folders``, read once per file version, and what went missing.

    :meth:`lookup` gives the tokenizer one encoder's view; ``missing`` and ``mismatched`` collect the
    names a prompt used that were left out, for the caller to report.
    """

    def __init__(self, folders: Sequence[str | os.PathLike[str]]):
        self.folders = [Path(f) for f in folders]
        self.missing: list[str] = []
        self.mismatched: list[str] = []
        self._cache: dict[tuple[str, str | None], tuple[float, torch.Tensor]] = {}
        self._lock = threading.Lock()

    def vectors(self, name: str, key: str | None) -> torch.Tensor | None:
        """The vectors of ``name`` for encoder ``key``, or None when no file has that name."""
        path = find_embedding(name, self.folders)
        if path is None:
            return None
        stamp = path.stat().st_mtime
        with self._lock:
            hit = self._cache.get((str(path), key))
            if hit is not None and hit[0] == stamp:
                return hit[1]
        tensor = read_embedding(path, key)
        with self._lock:
            self._cache[(str(path), key)] = (stamp, tensor)
        return tensor

    def lookup(self, slot: str, width: int) -> Callable[[str], torch.Tensor | None]:
        """The tokenizer's ``name → vectors`` function for one encoder (slot "l", "g" or "h",
        ``width`` channels): None when no file has the name; a file whose vectors have another
        width gives no vectors (``[0, width]``) and is noted in ``mismatched``."""
        def find(name: str) -> torch.Tensor | None:
            found = self.vectors(name, ENCODER_KEYS.get(slot))
            if found is not None and found.shape[1] != width:
                entry = f"{name} ({found.shape[1]}-wide vectors; this text encoder takes {width})"
                if entry not in self.mismatched:
                    self.mismatched.append(entry)
                return found.new_zeros(0, width)
            return found
        return find

    def note_missing(self, name: str) -> None:
        """Record a name that no file matched (the tokenizer calls this)."""
        if name not in self.missing:
            self.missing.append(name)
