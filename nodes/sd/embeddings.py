"""Textual-inversion embeddings: ``embedding:name`` in a prompt, with ComfyUI's semantics.

An embedding file holds one or more learned token vectors. Where a prompt says ``embedding:name``,
those vectors take the place of word tokens (they get the weight of the bracket they sit in, and
form one piece of the 77-token windows, see :mod:`nodes.sd.tokenizer`). As in ComfyUI:

- ``name`` is looked up in every folder of the ``embeddings`` model category and their sub-folders
  (the shallowest match first), as given or with ``.safetensors``, ``.pt`` or ``.bin`` appended; a
  name cannot leave the folders.
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

import threading
from collections.abc import Callable
from pathlib import Path

from nodegraph.errors import NodeError

import torch

from nodes.folders import ModelFolders
from nodes.sd.files import CheckpointError, load_pickle, read_state_dict

CATEGORY = "embeddings"
PREFIX = "embedding:"
SUFFIXES = (".safetensors", ".pt", ".bin")
ENCODER_KEYS = {"l": "clip_l", "g": "clip_g", "h": "clip_h"}  # encoder slot → key in SDXL-style files


class EmbeddingError(NodeError, ValueError):
    """An embedding file that exists but cannot be used; the message names the file."""


def find_embedding(name: str, models: ModelFolders) -> Path | None:
    """The file ``name`` refers to in the ``embeddings`` folders (see the module docstring), or None."""
    return models.find_anywhere(CATEGORY, name, SUFFIXES)


def read_embedding(path: Path, key: str | None) -> torch.Tensor:
    """The vectors ``[n, width]`` (float32) that ``path`` holds for the encoder ``key``."""
    return select_vectors(load_embedding_file(path), key, path)


def load_embedding_file(path: Path) -> object:
    """What an embedding file holds (a dict of tensors, or A1111's nested dict); EmbeddingError if unreadable."""
    try:
        if path.suffix.lower() == ".safetensors":
            return read_state_dict(path)[0]
        return load_pickle(path)
    except CheckpointError as exc:
        raise EmbeddingError(f"embedding {exc}") from None


def select_vectors(data: object, key: str | None, path: Path) -> torch.Tensor:
    """The vectors ``[n, width]`` (float32, a copy) that a file's contents hold for the encoder ``key``."""
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
    """Embeddings found in the ``embeddings`` model folders, read once per file version, and what a
    prompt named that went missing.

    :meth:`lookup` gives the tokenizer one encoder's view; ``missing`` and ``mismatched`` collect the
    names a prompt used that were left out, for the caller to report.
    """

    def __init__(self, models: ModelFolders):
        self.models = models
        self.missing: list[str] = []
        self.mismatched: list[str] = []
        self._files: dict[str, tuple[int, object]] = {}  # path -> (st_mtime_ns, contents)
        self._lock = threading.Lock()

    @property
    def folders(self) -> list[Path]:
        """The ``embeddings`` folders searched, in order."""
        return self.models.folders(CATEGORY)

    def vectors(self, name: str, key: str | None) -> torch.Tensor | None:
        """The vectors of ``name`` for encoder ``key``, or None when no file has that name. Each file
        is read once per version, whichever encoders (SDXL: two) take vectors from it."""
        path = find_embedding(name, self.models)
        if path is None:
            return None
        stamp = path.stat().st_mtime_ns
        with self._lock:
            hit = self._files.get(str(path))
        if hit is None or hit[0] != stamp:
            hit = (stamp, load_embedding_file(path))
            with self._lock:
                self._files[str(path)] = hit
        return select_vectors(hit[1], key, path)

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
