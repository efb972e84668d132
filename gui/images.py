"""Turn what nodes report (IMAGE tensors, numpy arrays, PIL images, file paths) into QImages.

Works without importing torch: a tensor is recognised by its ``detach`` method. QImages may be
made on any thread, so the runner converts on its worker thread and the UI only paints.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PySide6.QtGui import QImage

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MAX_IMAGES = 16


def array_to_qimage(arr: Any) -> QImage:
    """One image ``[H,W,C]`` (C = 1, 3 or 4) or ``[H,W]``, floats in 0..1 or uint8, as a QImage."""
    import numpy as np

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.transpose(a, (1, 2, 0))  # CHW → HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float32)) * 255.0, 0, 255).astype(np.uint8)
    a = np.ascontiguousarray(a)
    if a.ndim == 2:
        h, w = a.shape
        return QImage(a.data, w, h, a.strides[0], QImage.Format_Grayscale8).copy()
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"cannot show an array of shape {a.shape} as an image")
    h, w, c = a.shape
    fmt = QImage.Format_RGB888 if c == 3 else QImage.Format_RGBA8888
    return QImage(a.data, w, h, a.strides[0], fmt).copy()


def to_qimages(obj: Any, limit: int = MAX_IMAGES) -> list[QImage]:
    """Every image found in ``obj`` (a batch gives one per item), at most ``limit``."""
    out: list[QImage] = []
    _collect(obj, out, limit)
    return out


def _collect(obj: Any, out: list[QImage], limit: int) -> None:
    if len(out) >= limit or obj is None:
        return
    if isinstance(obj, QImage):
        if not obj.isNull():
            out.append(obj)
        return
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            img = QImage(str(path))
            if not img.isNull():
                out.append(img)
        return
    if isinstance(obj, dict):
        for key in ("path", "filename", "file", "image"):
            if key in obj:
                _collect(obj[key], out, limit)
                return
        return
    if hasattr(obj, "detach"):  # a torch tensor
        t = obj.detach().cpu()
        obj = t.float().numpy() if str(t.dtype) != "torch.uint8" else t.numpy()
    if hasattr(obj, "mode") and hasattr(obj, "size") and hasattr(obj, "convert"):  # PIL
        import numpy as np

        obj = np.asarray(obj.convert("RGBA" if "A" in obj.mode else "RGB"))
    if hasattr(obj, "ndim") and hasattr(obj, "shape"):
        if obj.ndim == 4:
            for i in range(min(obj.shape[0], limit - len(out))):
                out.append(array_to_qimage(obj[i]))
        elif obj.ndim in (2, 3):
            out.append(array_to_qimage(obj))
        return
    if isinstance(obj, Iterable) and not isinstance(obj, (bytes, bytearray)):
        for item in obj:
            _collect(item, out, limit)
            if len(out) >= limit:
                return


def ui_images(ui: dict[str, Any]) -> list[QImage]:
    """The images an output node showed (``ui["images"]``, else image files in ``ui["files"]``)."""
    if not ui:
        return []
    images = to_qimages(ui.get("images"))
    if not images:
        images = to_qimages(ui.get("files"))
    return images
