"""Live-preview projections fitted to a checkpoint's own VAE, computed once per file.

ComfyUI's published latent→RGB factors (previews.LATENT_RGB) are least-squares fits to Stable
Diffusion's VAE. A checkpoint whose VAE has another architecture (the shipped demo model's tiny
one) needs the same kind of fit against its own VAE, else the previews show wrong colours.

A fit encodes FIT_IMAGES small pictures (0.1-0.5 s on a CPU for the demo VAE: far too much for
every load), so it is lazy and remembered: FittedProjection computes it the first time a preview
asks and keeps it per file fingerprint (path, size, modification time), in the process and in
``<user cache dir>/preview-projections.json`` across runs (not under NODEGRAPH_TESTING=1). The
pictures come from a fixed seed: the same VAE always gives the same projection.
"""
from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path

import torch

from nodes.sd.previews import Projection

FIT_IMAGES = 16
FIT_SIZE = 32
"""The fit encodes FIT_IMAGES pictures of FIT_SIZE² pixels (16 of 32² fit the demo VAE as well as
48 of 64², at a fifth of the cost)."""
FIT_VERSION = 1
"""Part of every cache key: change it when the fit changes, so older cached fits are not used."""

_memo: dict[str, Projection] = {}
_memo_lock = threading.Lock()


def projection_for(vae, family: str, path: str | os.PathLike | None = None) -> FittedProjection | None:
    """The preview projection of a checkpoint (file ``path``) whose VAE is ``vae``: None (the family's
    published factors) for Stable Diffusion's own VAE architecture, else a FittedProjection."""
    from nodes.sd.vae import full_config, latent_scale

    if vae is None or vae.config == full_config(family):
        return None
    return FittedProjection(vae, latent_scale(family), fingerprint(path) if path is not None else None)


def fingerprint(path: str | os.PathLike) -> str | None:
    """What identifies a file's content cheaply: resolved path, size and modification time."""
    try:
        path = Path(path).resolve()
        st = path.stat()
    except OSError:
        return None
    return f"{path}|{st.st_size}|{st.st_mtime_ns}|fit{FIT_VERSION}"


def default_cache_file() -> Path | None:
    """``<user cache dir>/preview-projections.json``; None under NODEGRAPH_TESTING=1."""
    if os.environ.get("NODEGRAPH_TESTING") == "1":
        return None
    try:
        import platformdirs
    except ImportError:
        return None
    return platformdirs.user_cache_path("nodegraph", appauthor=False) / "preview-projections.json"


class FittedProjection:
    """Callable: the projection fitted to ``vae`` (computed on the first call, then remembered for
    the file ``key`` in the process and in ``cache_file``)."""

    def __init__(self, vae, scale: float, key: str | None, cache_file: Path | None = None):
        self._vae, self._scale, self.key = vae, scale, key
        self.cache_file = cache_file if cache_file is not None else default_cache_file()
        self._value: Projection | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Projection:
        with self._lock:
            if self._value is None:
                self._value = self._remembered() or self._fit_and_remember()
                self._vae = None  # the fit is done: do not keep the VAE alive for it
            return self._value

    def _remembered(self) -> Projection | None:
        if self.key is None:
            return None
        with _memo_lock:
            if self.key in _memo:
                return _memo[self.key]
        found = _read_cache(self.cache_file).get(self.key)
        if found is None:
            return None
        try:
            rows, bias = found
            value = tuple(tuple(float(v) for v in row) for row in rows), tuple(float(v) for v in bias)
        except (TypeError, ValueError):
            return None  # a damaged entry: fit again
        with _memo_lock:
            _memo[self.key] = value
        return value

    def _fit_and_remember(self) -> Projection:
        value = fit_projection(_float32_on_cpu(self._vae), self._scale)
        if self.key is not None:
            with _memo_lock:
                _memo[self.key] = value
            _write_cache(self.cache_file, self.key, value)
        return value


def _float32_on_cpu(vae):
    """``vae``, or a float32 CPU copy of it (half-precision convolutions are ~3× slower on a CPU; the
    VAEs fitted here are small, so the copy costs little)."""
    model = getattr(vae, "model", None)
    if model is None:
        return vae
    p = next(model.parameters())
    if p.dtype == torch.float32 and p.device.type == "cpu":
        return vae
    return type(vae)(copy.deepcopy(model).to("cpu", torch.float32), vae.family)


def _read_cache(cache_file: Path | None) -> dict:
    if cache_file is None:
        return {}
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(cache_file: Path | None, key: str, value: Projection) -> None:
    if cache_file is None:
        return
    from nodegraph.fileio import WriteError, write_text_atomic

    data = _read_cache(cache_file)
    data[key] = [list(map(list, value[0])), list(value[1])]
    try:
        write_text_atomic(cache_file, json.dumps(data, indent=0, sort_keys=True), parents=True)
    except (OSError, WriteError):
        pass  # a cache that cannot be written only costs time


def _fit_images(gen: torch.Generator) -> torch.Tensor:
    """IMAGE [N, S, S, 3]: each picture two random colours, split at a random place and angle (flat
    areas and edges, like the pictures a model draws)."""
    n, size = FIT_IMAGES, FIT_SIZE
    colours = torch.rand(n, 2, 3, generator=gen)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    angle = torch.rand(n, generator=gen) * 6.2832
    offset = (torch.rand(n, generator=gen) - 0.5) * size
    side = ((xs - size / 2) * torch.cos(angle)[:, None, None] + (ys - size / 2) * torch.sin(angle)[:, None, None]
            > offset[:, None, None])
    return torch.where(side[..., None], colours[:, None, None, 0], colours[:, None, None, 1])


@torch.inference_mode()
def fit_projection(vae, scale: float) -> Projection:
    """The affine map latent (U-Net space, i.e. raw × ``scale``) → RGB in −1…1 that best predicts,
    in the least-squares sense, the colour of each 8×8 block of a picture from the latent pixel
    ``vae`` encodes it to: the projection ComfyUI's published factors are for SD's VAE, fitted to
    this one."""
    images = _fit_images(torch.Generator().manual_seed(0))
    latents = vae.encode(images).double() * scale  # [N, 4, h, w], the mean of the posterior
    n, c, h, w = latents.shape
    blocks = images.movedim(-1, 1).reshape(n, 3, h, FIT_SIZE // h, w, FIT_SIZE // w).mean(dim=(3, 5))
    target = (blocks.double() * 2.0 - 1.0).movedim(1, -1).reshape(-1, 3)
    design = torch.cat([latents.movedim(1, -1).reshape(-1, c), torch.ones(n * h * w, 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, target).solution  # [c + 1, 3]: factor rows, then the bias
    rows = tuple(tuple(round(float(v), 6) for v in row) for row in solution[:c])
    return rows, tuple(round(float(v), 6) for v in solution[c])
