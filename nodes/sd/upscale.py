"""Upscale models (ESRGAN / Real-ESRGAN, SwinIR, compact SRVGGNet, ...) and tiled upscaling with them.

The architecture and its hyper-parameters are read from the weights by spandrel. Weights load from
``.safetensors``, or from pickle-based files (``.pth``, ``.pt``, ``.ckpt``, ``.bin``) only through
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers, so no
code inside a file ever runs.

``upscale_image`` cuts large images into overlapping tiles; neighbouring tiles are cross-faded in
the middle of their overlap, so the outer quarter of each overlap (where a tile's border cuts the
model's receptive field short) never reaches the output. On out-of-memory it halves the tile and
tries again, as ComfyUI's ImageUpscaleWithModel does.
"""
from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nodegraph.errors import NodeError

import torch
import torch.nn.functional as F

SAFETENSORS_EXTENSIONS = (".safetensors", ".sft")
PICKLE_EXTENSIONS = (".pth", ".pt", ".ckpt", ".bin")

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called after each tile."""


class UpscaleModelError(NodeError, ValueError):
    """An upscale model file cannot be loaded; the message names the file and what to do."""


@dataclass
class UpscaleModel:
    """A loaded single-image upscale model: call it on ``[B,C,H,W]`` to get ``[B,C,H·scale,W·scale]``."""

    path: Path
    architecture: str  # spandrel's architecture id: "ESRGAN", "Compact", "SwinIR", ...
    name: str  # the architecture's display name
    scale: int
    input_channels: int
    output_channels: int
    descriptor: Any  # spandrel.ImageModelDescriptor

    @property
    def module(self) -> torch.nn.Module:
        return self.descriptor.model

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def nbytes(self) -> int:
        """Bytes held by the weights (for memory accounting)."""
        return sum(t.numel() * t.element_size() for t in self.module.state_dict().values())

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "UpscaleModel":
        """Move the weights (in place) and return self."""
        if device is not None:
            self.descriptor.to(device)
        if dtype is not None:
            self.descriptor.to(dtype)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.descriptor(x.to(self.device, self.dtype))


# -- loading --------------------------------------------------------------------------------------
def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of an upscale model file (safetensors, or a weights-only pickle), unwrapped the way
    spandrel expects (``params_ema`` / ``params`` / ``state_dict`` containers, ``module.`` prefixes)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from spandrel import canonicalize_state_dict

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SAFETENSORS_EXTENSIONS + PICKLE_EXTENSIONS:
        raise UpscaleModelError(f"{path}: unsupported file type {ext or '(none)'!r}; upscale models load from "
                                f"{', '.join(SAFETENSORS_EXTENSIONS + PICKLE_EXTENSIONS)} files.")
    if not path.is_file():
        raise UpscaleModelError(f"{path}: no such file.")
    try:
        if ext in SAFETENSORS_EXTENSIONS:
            raw: Any = load_file(str(path), device="cpu")
        else:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UpscaleModelError(
            f"{path}: refused. The file holds Python objects other than tensors, and NodeGraph reads pickle-based "
            f"model files only with torch.load(weights_only=True), so that no code in a file can run "
            f"({str(exc).splitlines()[0]}). Use a .safetensors version of this model, or convert the file with "
            f"a tool you trust.") from exc
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError) as exc:
        kind = "safetensors" if ext in SAFETENSORS_EXTENSIONS else "PyTorch"
        raise UpscaleModelError(f"{path}: not a readable {kind} file; it may be truncated or corrupt "
                                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). "
                                f"Download it again.") from exc
    if not isinstance(raw, dict):
        raise UpscaleModelError(f"{path}: holds a {type(raw).__name__}, not a state dict of tensors.")
    state = canonicalize_state_dict(raw)
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UpscaleModelError(f"{path}: contains no weight tensors (keys: {_first_keys(state)}).")
    return tensors


def load_upscale_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> UpscaleModel:
    """Load an upscale model; spandrel detects its architecture and scale from the weights."""
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    path = Path(path)
    state = read_state_dict(path)
    try:
        descriptor = ModelLoader(device=device).load_from_state_dict(state)
    except UnsupportedModelError as exc:
        raise UpscaleModelError(f"{path}: not an upscale model architecture that spandrel {_spandrel_version()} "
                                f"recognises (first keys: {_first_keys(state)}). Check that the file is an "
                                f"upscale model (ESRGAN, Real-ESRGAN, SwinIR, HAT, compact, ...).") from exc
    except Exception as exc:  # a recognised layout whose tensors do not fit it
        raise UpscaleModelError(f"{path}: the weights look like an upscale model but do not fit its architecture "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                                f"The file may be damaged or a variant spandrel does not support.") from exc
    if not isinstance(descriptor, ImageModelDescriptor):
        raise UpscaleModelError(f"{path}: is a {descriptor.architecture.name} model that needs a mask input "
                                f"(e.g. inpainting); ImageUpscaleWithModel needs a single-image model.")
    descriptor.eval()
    for p in descriptor.model.parameters():
        p.requires_grad_(False)
    return UpscaleModel(path=path, architecture=str(descriptor.architecture.id), name=descriptor.architecture.name,
                        scale=int(descriptor.scale), input_channels=int(descriptor.input_channels),
                        output_channels=int(descriptor.output_channels), descriptor=descriptor)


def _first_keys(state: dict, n: int = 5) -> str:
    keys = list(state)[:n]
    return ", ".join(map(str, keys)) + (", ..." if len(state) > n else "") if keys else "(none)"


def _spandrel_version() -> str:
    import spandrel

    return getattr(spandrel, "__version__", "")


# -- tiling ---------------------------------------------------------------------------------------
def tile_spans(size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, end)`` spans of length ``tile`` covering ``0..size``, evenly spaced, neighbours sharing
    at least ``overlap`` pixels (a single span when the size fits in one tile)."""
    if size <= tile:
        return [(0, size)]
    step = tile - overlap
    if step <= 0:
        raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap}).")
    gaps = math.ceil((size - tile) / step)
    return [(s, s + tile) for s in (round(i * (size - tile) / gaps) for i in range(gaps + 1))]


def _axis_weights(spans: list[tuple[int, int]], overlap: int, scale: int) -> list[torch.Tensor]:
    """Per span, the blend weight of each output pixel along one axis: 1 inside, cross-fading linearly
    with each neighbour over ``overlap / 2`` input pixels centred in the region the two share."""
    ramp = overlap / 2
    weights = []
    for i, (start, end) in enumerate(spans):
        u = (torch.arange((end - start) * scale, dtype=torch.float64) + 0.5) / scale + start  # input coordinate
        w = torch.ones_like(u)
        if i > 0:  # fade in after the previous span
            centre = (start + spans[i - 1][1]) / 2
            w = torch.minimum(w, _ramp(u - centre, ramp))
        if i + 1 < len(spans):  # fade out before the next span
            centre = (spans[i + 1][0] + end) / 2
            w = torch.minimum(w, _ramp(centre - u, ramp))
        weights.append(w.float())
    return weights


def _ramp(d: torch.Tensor, width: float) -> torch.Tensor:
    if width <= 0:
        return (d >= 0).double()
    return (d / width + 0.5).clamp(0.0, 1.0)


def _run_tiled(model: UpscaleModel, x: torch.Tensor, tile: int, overlap: int,
               progress: ProgressFn | None) -> torch.Tensor:
    """Upscale ``x [B,C,H,W]`` tile by tile into a float32 CPU tensor."""
    batch, _, height, width = x.shape
    scale = int(model.scale)
    ys, xs = tile_spans(height, tile, overlap), tile_spans(width, tile, overlap)
    wy, wx = _axis_weights(ys, overlap, scale), _axis_weights(xs, overlap, scale)
    out = torch.zeros(batch, model.output_channels, height * scale, width * scale)
    norm = torch.zeros(1, 1, height * scale, width * scale)
    total, done = batch * len(ys) * len(xs), 0
    for b in range(batch):
        for (y0, y1), wyv in zip(ys, wy):
            for (x0, x1), wxv in zip(xs, wx):
                piece = model(x[b:b + 1, :, y0:y1, x0:x1]).to("cpu", torch.float32)
                expected = ((y1 - y0) * scale, (x1 - x0) * scale)
                if tuple(piece.shape[-2:]) != expected:
                    raise RuntimeError(f"{model.path.name}: the model returned {tuple(piece.shape[-2:])} pixels for "
                                       f"a tile that should become {expected} at scale {scale}.")
                w = wyv[:, None] * wxv[None, :]
                out[b:b + 1, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += piece * w
                if b == 0:
                    norm[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] += w
                done += 1
                if progress is not None:
                    progress(done, total)
    return out / norm


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device or host allocation failure (worth retrying with smaller tiles)."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def upscale_image(
    model: UpscaleModel,
    image: torch.Tensor,
    *,
    tile: int = 512,
    overlap: int = 32,
    progress: ProgressFn | None = None,
    min_tile: int = 128,
) -> torch.Tensor:
    """Upscale an IMAGE ``[B,H,W,C]`` (0..1) by the model's scale; returns a float32 CPU IMAGE clamped to 0..1.

    Images that fit in one ``tile`` go through the model whole. Larger ones are tiled with ``overlap``
    pixels shared between neighbours. An alpha channel (C = 4) is resized bilinearly beside the
    upscaled colour, as in ComfyUI. On out-of-memory the tile is halved (the overlap kept at most a
    quarter of it) and the image tried again, down to ``min_tile``.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be an IMAGE tensor [B,H,W,C]; got {got}.")
    if image.shape[0] == 0:
        raise ValueError("image is an empty batch (0 images): there is nothing to upscale.")
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be at least 1 and overlap at least 0 (got tile={tile}, overlap={overlap}).")
    channels = image.shape[-1]
    alpha = None
    if channels == model.input_channels + 1:
        image, alpha = image[..., :-1], image[..., -1:]
    elif channels != model.input_channels:
        raise ValueError(f"image has {channels} channels but the upscale model {model.path.name} takes "
                         f"{model.input_channels}.")
    x = image.movedim(-1, 1)
    while True:
        try:
            out = _run_tiled(model, x, tile, min(overlap, tile // 4), progress)
            break
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if tile // 2 < min_tile:
                if hasattr(exc, "add_note"):
                    exc.add_note(f"Upscaling ran out of memory even with {tile}-pixel tiles: free memory "
                                 f"(unload other models) or upscale a smaller image.")
                raise
            tile //= 2
    out = out.clamp(0.0, 1.0).movedim(1, -1)
    if alpha is not None:
        alpha = F.interpolate(alpha.movedim(-1, 1).to("cpu", torch.float32), size=out.shape[1:3], mode="bilinear")
        out = torch.cat([out, alpha.movedim(1, -1)], dim=-1)
    return out
