"""A Load Image node's picture for the mask painter, and where the painted mask is saved.

The picture is the file the node reads (found in the input folders as Load Image finds it, see
``nodes.image``). Its mask starts from its alpha as Load Image reads it (1 − alpha; zeros without
alpha). Saving writes the picture's own RGB with alpha = 1 − mask to a NEW PNG — never over the
original — beside the original inside its input folder (a picture given by a path outside the input
folders goes to the first input folder), named ``<stem>-mask_<counter>_.png`` with a counter no input
folder uses yet, so that Load Image finds exactly that file under the returned name. The original's
PNG text chunks (a workflow saved in it, …) are copied into the new file, as ComfyUI's mask upload does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from nodegraph.errors import NodeError

LOAD_IMAGE = "LoadImage"
"""The node type whose picture the painter edits (its ``image`` param)."""

_MASKED_SUFFIX = re.compile(r"-mask_\d+_$")


class PictureError(NodeError):
    """The node's picture cannot be opened for painting (missing, unreadable, no built-in pack)."""


@dataclass
class Picture:
    name: str          # the node's ``image`` param
    path: Path         # the file it names
    folder: Path       # the input folder a saved mask goes to (the name is relative to it)
    subfolder: str     # the folder inside ``folder`` the new file goes to ("" or "a/b")
    rgb: np.ndarray    # [H, W, 3] uint8, EXIF orientation applied (as Load Image)
    mask: np.ndarray   # [H, W] float32 0..1 (1 = to repaint)
    text: dict[str, str]  # the original's PNG text chunks (a workflow, …), kept in the new file as ComfyUI does


def _input_folders() -> list[Path]:
    try:
        from nodes.image import input_folders
    except ImportError as exc:  # the GUI without the built-in pack
        raise PictureError("the built-in node pack (nodes) is not installed: it finds Load Image's files") from exc
    return input_folders()


def open_picture(name: str) -> Picture:
    """The picture Load Image reads for ``name`` and its mask (PictureError / ImageLoadError naming it)."""
    try:
        from nodes.image import resolve_image
    except ImportError as exc:
        raise PictureError("the built-in node pack (nodes) is not installed: it finds Load Image's files") from exc
    path = resolve_image(name)
    try:
        with Image.open(path) as original:
            text = {k: v for k, v in getattr(original, "text", {}).items() if isinstance(v, str)}
            img = ImageOps.exif_transpose(original)
            rgba = np.asarray(img.convert("RGBA"))
            has_alpha = "A" in img.mode or "transparency" in img.info
    except OSError as exc:
        raise PictureError(f"{path}: cannot be read as an image ({exc})") from exc
    rgb = np.ascontiguousarray(rgba[..., :3])
    mask = (1.0 - rgba[..., 3].astype(np.float32) / 255.0) if has_alpha else np.zeros(rgb.shape[:2], np.float32)
    folder, subfolder = _home(path.resolve())
    return Picture(name, path, folder, subfolder, rgb, mask.astype(np.float32), text)


def _home(path: Path) -> tuple[Path, str]:
    """The input folder holding ``path`` and the sub-folder inside it (else the first input folder)."""
    folders = _input_folders()
    for folder in folders:
        try:
            rel = path.parent.relative_to(folder.expanduser().resolve())
        except (ValueError, OSError):
            continue
        return folder, "" if str(rel) == "." else rel.as_posix()
    return folders[0], ""


def masked_image(rgb: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The picture with alpha = 1 − mask (8 bits; Load Image reads the mask back as 1 − alpha/255)."""
    alpha = np.rint((1.0 - np.clip(mask, 0.0, 1.0)) * 255.0).astype(np.uint8)
    return Image.fromarray(np.concatenate([rgb, alpha[..., None]], axis=-1), "RGBA")


def _first_free_counter(stem: str, subfolder: str) -> int:
    """1 + the highest counter of ``<stem>_<n>_`` files in that sub-folder of every input folder."""
    pattern = re.compile(re.escape(stem) + r"_(\d+)_\.png$")
    highest = 0
    for folder in _input_folders():
        where = folder / subfolder
        if where.is_dir():
            for entry in where.iterdir():
                m = pattern.match(entry.name)
                if m:
                    highest = max(highest, int(m.group(1)))
    return highest + 1


def save_picture(picture: Picture, mask: np.ndarray) -> str:
    """Write the picture with ``mask`` as its alpha to a new file; return the name Load Image knows it by.
    A folder that cannot be written (read-only, missing and not creatable, full disk) raises WriteError."""
    from nodegraph.fileio import writing
    from nodes.imageio import save_new_png

    stem = _MASKED_SUFFIX.sub("", picture.path.stem) + "-mask"
    target = picture.folder / picture.subfolder
    with writing(target, "create the folder"):
        target.mkdir(parents=True, exist_ok=True)
    path = save_new_png(masked_image(picture.rgb, mask), target, stem, _first_free_counter(stem, picture.subfolder),
                        text=picture.text)
    return path.name if not picture.subfolder else f"{picture.subfolder}/{path.name}"
