"""Reading and writing the image files of SaveImage, PreviewImage and LoadImage.

- ``save_images`` writes PNGs that carry their graph: a ``nodegraph`` text chunk (the graph file)
  and ComfyUI's ``prompt`` (API format) / ``workflow`` chunks, so ComfyUI can open them too.
  Files are named as ComfyUI names them, ``<prefix>_00001_.png``; the counter continues after
  the highest one in the folder and an existing file is never overwritten, even by a second
  process saving at the same moment. A prefix may hold sub-folders but never leaves the output
  folder.
- ``save_animation`` writes a batch as one animated WebP or PNG (APNG), named and placed the same way,
  carrying the graph as ComfyUI's animated files do.
- ``read_graph_from_png`` returns the graph chunks a PNG (or a ComfyUI WebP, whose EXIF holds
  them) carries.
- ``load_image`` reads any image Pillow reads into ComfyUI's IMAGE and MASK tensors.
- ``image_fingerprint`` hashes a file's bytes, for the executor's cache.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, ImageSequence, PngImagePlugin

from nodegraph.errors import InputError, NodeError, WriteError
from nodegraph.fileio import fsync_dir, fsync_file, usual_mode, writing
from nodegraph.format import read_image_chunks

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

GRAPH_CHUNK = "nodegraph"
COMFY_PROMPT_CHUNK = "prompt"
COMFY_WORKFLOW_CHUNK = "workflow"
GRAPH_CHUNKS = (GRAPH_CHUNK, COMFY_PROMPT_CHUNK, COMFY_WORKFLOW_CHUNK)

ENV_MAX_PIXELS = "NODEGRAPH_MAX_IMAGE_PIXELS"


class UnsafePathError(NodeError, ValueError):
    """A filename prefix would write outside the output folder, or is not a portable file name."""


class ImageLoadError(NodeError, ValueError):
    """An image file cannot be read (missing, not an image, corrupt, truncated, unsupported mode)."""


class ImageTooLargeError(ImageLoadError):
    """An image has more pixels than the decompression-bomb limit allows."""


# -- output file names --------------------------------------------------------------------------
_RESERVED_WINDOWS = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_FORBIDDEN_CHARS = set('<>:"|?*\\')
_MAX_NAME_BYTES = 255  # per file or folder name on ext4, NTFS, APFS
_PREFIX_RULES = ("Use a plain name such as 'NodeGraph' or sub-folders separated by '/' such as 'portraits/take1'; "
                 "'..', absolute paths, drive letters, backslashes, control characters and <>:\"|?* are not allowed.")


def _shown(text: object, limit: int = 80) -> str:
    """``repr`` of a value for a message, cut to ``limit`` characters with its full length said."""
    shown = repr(text)
    if len(shown) <= limit:
        return shown
    size = f" ({len(text)} characters)" if isinstance(text, str) else ""
    return f"{shown[:limit]}…{size}"


def split_prefix(prefix: str) -> tuple[list[str], str]:
    """Check a filename prefix and split it into its sub-folders and its file name stem.

    Raises ``UnsafePathError`` for anything that could leave the output folder or that is not a
    portable file name.
    """
    def fail(why: str) -> UnsafePathError:
        return UnsafePathError(f"filename_prefix {_shown(prefix)}: {why}. {_PREFIX_RULES}")

    if not isinstance(prefix, str) or not prefix.strip():
        raise fail("is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in prefix):
        raise fail("contains a control character (such as NUL)")
    if "\\" in prefix:
        raise fail("contains a backslash")
    if len(prefix) >= 2 and prefix[1] == ":" and prefix[0].isalpha():
        raise fail("starts with a drive letter")
    if prefix.startswith("/") or prefix.startswith("~"):
        raise fail("is an absolute path")
    bad = sorted(set(prefix) & _FORBIDDEN_CHARS)
    if bad:
        raise fail(f"contains {' '.join(bad)}")
    parts = [p for p in prefix.split("/") if p not in ("", ".")]
    if prefix.endswith("/") or not parts:
        raise fail("ends with '/' (it needs a file name after the last folder)")
    for i, part in enumerate(parts):
        if part == "..":
            raise fail("contains '..'")
        try:
            size = len(part.encode("utf-8")) + (0 if i < len(parts) - 1 else len("_00001_.png"))
        except UnicodeEncodeError:
            raise fail("contains a lone surrogate character, which no file name can hold") from None
        if size > _MAX_NAME_BYTES:
            what = "a folder name" if i < len(parts) - 1 else "a file name (with the counter _00001_.png)"
            raise fail(f"makes {what} of {size} bytes; file systems allow {_MAX_NAME_BYTES}: shorten it")
        if part.split(".")[0].upper() in _RESERVED_WINDOWS:
            raise fail(f"uses {part!r}, a reserved device name on Windows")
        if part.endswith((" ", ".")):
            raise fail(f"has a folder or name ending in a space or dot ({part!r})")
    return parts[:-1], parts[-1]


def _expand_placeholders(prefix: str, width: int, height: int, now: time.struct_time) -> str:
    """ComfyUI's filename placeholders: %width% %height% %year% %month% %day% %hour% %minute% %second%."""
    values = {"width": width, "height": height, "year": now.tm_year, "month": f"{now.tm_mon:02d}",
              "day": f"{now.tm_mday:02d}", "hour": f"{now.tm_hour:02d}", "minute": f"{now.tm_min:02d}",
              "second": f"{now.tm_sec:02d}"}
    for key, value in values.items():
        prefix = prefix.replace(f"%{key}%", str(value))
    return prefix


def _next_counter(folder: Path, stem: str) -> int:
    """1 + the highest counter of ``<stem>_<digits>_...`` / ``<stem>_<digits>.ext`` files in ``folder``."""
    pattern = re.compile(re.escape(stem) + r"_(\d+)(?:_|\.)")
    highest = 0
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 1
    for name in names:
        m = pattern.match(name)
        if m:
            highest = max(highest, int(m.group(1)))
    return highest + 1


def _resolve_output_folder(out_dir: Path, subfolders: list[str], prefix: str) -> Path:
    """The output sub-folder, created one level at a time, each level checked to be inside ``out_dir``
    (a symbolic link inside the output folder must not lead the write elsewhere)."""
    root = out_dir.resolve()
    current = root
    for part in subfolders:
        step = current / part
        if step.is_symlink() and not step.exists():
            raise UnsafePathError(f"filename_prefix {_shown(prefix)}: {step} is a symbolic link that "
                                  "loops or leads nowhere; fix or remove the link, or choose another "
                                  "sub-folder.")
        try:
            with writing(step, "create the folder"):
                if not step.exists():
                    step.mkdir(exist_ok=True)
            real = step.resolve(strict=True)
        except (RuntimeError, OSError) as exc:  # a symbolic-link loop (RuntimeError before 3.13)
            if isinstance(exc, WriteError):
                raise
            raise UnsafePathError(f"filename_prefix {_shown(prefix)}: {step} cannot be used ({exc}); a "
                                  "symbolic link under the output folder may point back at itself. "
                                  "Fix the link or choose another sub-folder.") from None
        if real != root and root not in real.parents:
            raise UnsafePathError(f"filename_prefix {_shown(prefix)}: {step} leads outside the output folder {root} "
                                  f"(through a symbolic link). Choose another sub-folder.")
        current = real
    return current


# -- saving -------------------------------------------------------------------------------------
def _to_pil(image: "torch.Tensor", index: int) -> Image.Image:
    import numpy as np
    import torch

    arr = torch.nan_to_num(image.detach().to("cpu", torch.float32), nan=0.0).numpy()
    # As ComfyUI: scale by 255, clip, truncate (not round), so that the same tensor gives the same bytes.
    arr = np.clip(255.0 * arr, 0, 255).astype(np.uint8)
    channels = arr.shape[-1]
    if channels == 1:
        return Image.fromarray(np.ascontiguousarray(arr[..., 0]))  # L
    if channels in (3, 4):
        return Image.fromarray(arr)  # RGB / RGBA
    raise InputError(f"images[{index}] has {channels} channels; an IMAGE to save needs 1 (grey), 3 (RGB) or 4 (RGBA) "
                     f"channels in its last dimension [B,H,W,C].")


def _ascii_json(text: str) -> str:
    """ComfyUI writes its chunks with json.dumps (pure ASCII); keep ours so its reader copes."""
    if text.isascii():
        return text
    try:
        return json.dumps(json.loads(text))
    except ValueError:
        return text


def save_images(
    images: "torch.Tensor",
    out_dir: str | os.PathLike[str],
    prefix: str = "NodeGraph",
    *,
    graph_json: str | None = None,
    comfy_prompt_json: str | None = None,
    comfy_workflow_json: str | None = None,
    compress_level: int = 4,
) -> list[Path]:
    """Save an IMAGE batch ``[B,H,W,C]`` (floats in 0..1) as PNGs in ``out_dir``; return their paths.

    Names are ``<prefix>_<counter:05d>_.png`` (ComfyUI's naming: a folder shared with ComfyUI
    keeps counting). Each file is written to a temporary file in the same folder, flushed to disk,
    and then linked to its final name only if that name is still free, so nothing is overwritten and
    no reader ever sees half a PNG. The optional JSON strings go into text chunks ``nodegraph``,
    ``prompt`` and ``workflow``. ``compress_level`` is zlib's (ComfyUI: 4 for outputs, 1 for previews).
    """
    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"images must be an IMAGE tensor [B,H,W,C]; got {shape}.")
    if images.shape[0] == 0:
        raise InputError("images is an empty batch (0 images): there is nothing to save.")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise InputError(f"images have no pixels (shape {tuple(images.shape)}).")
    if not isinstance(prefix, str):
        raise UnsafePathError(f"filename_prefix must be text, not {type(prefix).__name__}. {_PREFIX_RULES}")
    height, width = int(images.shape[1]), int(images.shape[2])
    expanded = _expand_placeholders(prefix, width, height, time.localtime())
    split_prefix(expanded.replace("%batch_num%", "0"))  # fail before writing anything
    out_dir = Path(out_dir)
    with writing(out_dir, "use the output folder"):
        out_dir.mkdir(parents=True, exist_ok=True)

    info = PngImagePlugin.PngInfo()
    if graph_json is not None:
        info.add_text(GRAPH_CHUNK, graph_json)
    if comfy_prompt_json is not None:
        info.add_text(COMFY_PROMPT_CHUNK, _ascii_json(comfy_prompt_json))
    if comfy_workflow_json is not None:
        info.add_text(COMFY_WORKFLOW_CHUNK, _ascii_json(comfy_workflow_json))

    paths: list[Path] = []
    counters: dict[tuple[Path, str], int] = {}
    for index in range(images.shape[0]):
        subfolders, stem = split_prefix(expanded.replace("%batch_num%", str(index)))
        folder = _resolve_output_folder(out_dir, subfolders, prefix)
        buffer = io.BytesIO()
        _to_pil(images[index], index).save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
        key = (folder, stem)
        counter = counters.get(key) or _next_counter(folder, stem)
        path, counter = _write_new_file(folder, stem, counter, buffer.getvalue())
        counters[key] = counter + 1
        paths.append(path)
    return paths


def save_animation(
    images: "torch.Tensor",
    out_dir: str | os.PathLike[str],
    prefix: str,
    fmt: str,
    fps: float,
    *,
    graph_json: str | None = None,
    comfy_prompt_json: str | None = None,
    **options: object,
) -> Path:
    """Save an IMAGE batch as one animated file (``fmt`` "WEBP" or "PNG" — APNG), each image a frame
    shown for 1000/``fps`` ms; return its path, ``<prefix>_<counter:05d>_.webp`` / ``.png``.

    Named, placed and written like ``save_images`` (never overwriting, never leaving ``out_dir``). The
    graph goes where ComfyUI puts it: a PNG's text chunks (``nodegraph``, ``prompt``), a WebP's EXIF
    (``prompt:{json}`` in tag 0x0110, ``nodegraph:{json}`` in 0x010f). ``options`` go to Pillow
    (``lossless``, ``quality``, ``method`` for WebP; ``compress_level`` for PNG).
    """
    if images.ndim != 4 or images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise InputError(f"images must be a non-empty IMAGE batch [B,H,W,C]; got shape {tuple(images.shape)}.")
    height, width = int(images.shape[1]), int(images.shape[2])
    expanded = _expand_placeholders(prefix, width, height, time.localtime()).replace("%batch_num%", "0")
    subfolders, stem = split_prefix(expanded)
    out_dir = Path(out_dir)
    with writing(out_dir, "use the output folder"):
        out_dir.mkdir(parents=True, exist_ok=True)
    folder = _resolve_output_folder(out_dir, subfolders, prefix)
    frames = [_to_pil(images[i], i) for i in range(images.shape[0])]
    extra: dict[str, object] = {}
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        if graph_json is not None:
            info.add_text(GRAPH_CHUNK, graph_json)
        if comfy_prompt_json is not None:
            info.add_text(COMFY_PROMPT_CHUNK, _ascii_json(comfy_prompt_json))
        extra["pnginfo"] = info
    else:
        exif = Image.Exif()
        if comfy_prompt_json is not None:
            exif[0x0110] = f"{COMFY_PROMPT_CHUNK}:{_ascii_json(comfy_prompt_json)}"
        if graph_json is not None:
            exif[0x010F] = f"{GRAPH_CHUNK}:{graph_json}"
        extra["exif"] = exif
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=int(1000.0 / fps),
                   **extra, **options)
    path, _ = _write_new_file(folder, stem, _next_counter(folder, stem), buffer.getvalue(), "." + fmt.lower())
    return path


def save_new_png(image: Image.Image, folder: Path, stem: str, counter: int = 1,
                 text: dict[str, str] | None = None) -> Path:
    """Encode ``image`` as PNG (with ``text`` chunks) and write it atomically to the first free
    ``<stem>_<counter>_.png`` in ``folder`` (counting up from ``counter``; an existing file is never
    replaced). A WriteError names the file when the folder cannot be written (read-only, full disk, …).
    The mask painter saves with it."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=4, pnginfo=info)
    path, _ = _write_new_file(Path(folder), stem, counter, buffer.getvalue())
    return path


def save_new_file(out_dir: str | os.PathLike[str], prefix: str, suffix: str,
                  write: "Callable[[Path], None]") -> Path:
    """Write a new output file ``<prefix>_<counter:05d>_<suffix>`` under ``out_dir`` (SaveImage's naming
    and rules: sub-folders allowed, never outside ``out_dir``, never over an existing file, atomic):
    ``write(path)`` writes the content into a temporary path, which then takes the final name."""
    if not isinstance(prefix, str):
        raise UnsafePathError(f"filename_prefix must be text, not {type(prefix).__name__}. {_PREFIX_RULES}")
    subfolders, stem = split_prefix(prefix)
    out_dir = Path(out_dir)
    with writing(out_dir, "use the output folder"):
        out_dir.mkdir(parents=True, exist_ok=True)
    folder = _resolve_output_folder(out_dir, subfolders, prefix)
    path, _ = _write_new_file(folder, stem, _next_counter(folder, stem), write, suffix)
    return path


def _write_new_file(folder: Path, stem: str, counter: int, data: "bytes | Callable[[Path], None]",
                    suffix: str = ".png") -> tuple[Path, int]:
    """Write ``data`` atomically to the first free ``<stem>_<counter>_<suffix>``; return (path, counter).
    ``data`` is the bytes, or a function writing the content into the (temporary) path it is given.
    An OS failure (full disk, read-only folder, …) is a WriteError naming the file; nothing is left."""
    tmp: Path | None = None
    try:
        with writing(folder / f"{stem}_{counter:05d}_{suffix}"):
            fd, tmp_name = tempfile.mkstemp(prefix=".nodegraph-", suffix=".tmp", dir=folder)
            tmp = Path(tmp_name)
            if callable(data):
                os.close(fd)
                data(tmp)  # a writer may put a new file in its place (safetensors does, private: 0600)
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            # mkstemp's file, or a writer's, is private (0600); outputs get the usual mode. The file
            # synced is the one at the path now, whichever the writer left there.
            os.chmod(tmp, usual_mode())
            fsync_file(tmp)
            while True:
                final = folder / f"{stem}_{counter:05d}_{suffix}"
                try:
                    _claim(tmp, final)
                    break
                except FileExistsError:
                    counter += 1
            fsync_dir(folder)
            return final, counter
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def _claim(tmp: Path, final: Path) -> None:
    """Give ``tmp``'s content the name ``final`` atomically, failing with FileExistsError if taken."""
    try:
        os.link(tmp, final)  # atomic and exclusive: fails if ``final`` exists
        return
    except FileExistsError:
        raise
    except OSError:
        pass  # file systems without hard links: reserve the name exclusively, then replace it
    fd = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.close(fd)
    try:
        os.replace(tmp, final)
    except OSError:
        final.unlink(missing_ok=True)  # give the reserved name back
        raise


# -- reading embedded graphs ----------------------------------------------------------------------
def read_graph_from_png(path: str | os.PathLike[str]) -> dict[str, str]:
    """The graph chunks an image carries, as raw JSON text keyed ``nodegraph`` / ``prompt`` / ``workflow``
    (only those present).

    Reads PNG text chunks and the EXIF of ComfyUI's WebP files (see
    ``nodegraph.format.read_image_chunks``, which this wraps with the errors of this module).
    """
    path = Path(path)
    try:
        return read_image_chunks(path, GRAPH_CHUNKS)
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{path}: no such file.") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{path}: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageLoadError(f"{path}: cannot read it as an image ({exc}). Is it a PNG or WebP file that NodeGraph "
                             f"or ComfyUI saved?") from exc


# -- loading --------------------------------------------------------------------------------------
def get_max_image_pixels() -> int | None:
    """The decompression-bomb limit: images with more pixels (all frames together) are refused."""
    return Image.MAX_IMAGE_PIXELS


def set_max_image_pixels(limit: int | None) -> None:
    """Change the decompression-bomb limit for the whole process (``None``: no limit).

    Also settable with the environment variable ``NODEGRAPH_MAX_IMAGE_PIXELS``. This is Pillow's own
    ``Image.MAX_IMAGE_PIXELS``, so every image Pillow opens in the process follows it.
    """
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise InputError(f"the pixel limit must be a positive integer or None, not {limit!r}.")
    Image.MAX_IMAGE_PIXELS = limit


def _apply_env_limit() -> None:
    raw = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if raw:
        try:
            set_max_image_pixels(None if raw.lower() in ("none", "0") else int(raw))
        except ValueError:
            warnings.warn(f"{ENV_MAX_PIXELS}={raw!r} is not a number of pixels; keeping {Image.MAX_IMAGE_PIXELS}.",
                          stacklevel=2)


_apply_env_limit()


def _too_large(path: Path, pixels: int | str, limit: int | None, what: str = "") -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{path}: the image has {pixels} pixels{what}, more than the limit of {limit} pixels, and was refused "
        f"as a possible decompression bomb. If you trust the file, raise the limit with the environment variable "
        f"{ENV_MAX_PIXELS}=N (or nodes.imageio.set_max_image_pixels(N)).")


def _refuse_bombs_before_decoding(img: Image.Image, path: Path, limit: int | None) -> None:
    """Refuse a file whose frames hold more than ``limit`` pixels in all, from its headers alone: an
    animated GIF small on disk can decode to gigabytes. (Frames of another size than the first are
    counted at the first's size: the check errs on the side of refusing.)"""
    if limit is None:
        return
    frames = 1 if img.format == "MPO" else max(1, int(getattr(img, "n_frames", 1) or 1))
    width, height = img.size
    total = frames * width * height
    if total > limit:
        raise _too_large(path, total, limit, "" if frames == 1 else f" in {frames} frames")


def load_image(path: str | os.PathLike[str]) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Read an image file into ``(image [B,H,W,3] float 0..1, mask [B,H,W] float 0..1)``.

    As ComfyUI's LoadImage: the EXIF orientation is applied; mask = 1 − alpha (a palette or colour-key
    transparency counts as alpha); the frames of an animated file that have the first frame's size
    form the batch (an MPO's extra pictures are skipped). 16-bit greyscale keeps its precision.
    Without alpha the mask is zeros of the image's size (ComfyUI gives 64×64 zeros).
    Raises ``ImageLoadError`` (``ImageTooLargeError`` for decompression bombs) naming the file.
    """
    import numpy as np
    import torch

    path = Path(path)
    limit = get_max_image_pixels()
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                fmt = img.format
                _refuse_bombs_before_decoding(img, path, limit)
                total = 0
                for index, frame in enumerate(ImageSequence.Iterator(img)):
                    if index > 0 and fmt == "MPO":
                        break
                    w, h = frame.size
                    total += w * h
                    if limit is not None and total > limit:
                        raise _too_large(path, total, limit, "" if index == 0 else f" in {index + 1} frames")
                    rgb, alpha = _frame_to_arrays(ImageOps.exif_transpose(frame), path)
                    if images and rgb.shape != images[0].shape:
                        continue  # as ComfyUI: frames of another size than the first are left out
                    images.append(rgb)
                    masks.append(np.zeros(rgb.shape[:2], np.float32) if alpha is None else 1.0 - alpha)
    except ImageLoadError:
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{path}: no such file.") from exc
    except IsADirectoryError as exc:
        raise ImageLoadError(f"{path}: is a folder, not an image file.") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        m = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(path, m.group(1) if m else "too many", limit) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(f"{path}: not an image file Pillow can read (PNG, JPEG, WebP, GIF, BMP, TIFF, ...). "
                             f"Check that the file is complete and really an image.") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageLoadError(f"{path}: the image data is corrupt or truncated ({exc}). Re-export or re-download "
                             f"the image.") from exc
    if not images:
        raise ImageLoadError(f"{path}: the file contains no image frames.")
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))


_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}  # not "LAB", whose "A" band is a colour axis


def _frame_to_arrays(frame: Image.Image, path: Path):
    """One frame as (RGB float32 [H,W,3] in 0..1, alpha float32 [H,W] in 0..1 or None)."""
    import numpy as np

    mode = frame.mode
    if mode in _SIXTEEN_BIT:
        grey = np.clip(np.asarray(frame, dtype=np.float32) / 65535.0, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2), None
    if mode == "F":  # float pixels on Pillow's 0..255 scale
        grey = np.clip(np.asarray(frame, dtype=np.float32) / 255.0, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2), None
    try:
        if mode in _ALPHA_MODES or "transparency" in frame.info:
            rgba = np.asarray(frame.convert("RGBA"), dtype=np.float32) / 255.0
            return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
        return np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0, None
    except ValueError as exc:
        if "conversion" not in str(exc):
            raise
        raise ImageLoadError(f"{path}: image mode {mode!r} cannot be converted to RGB ({exc}). Save the image as "
                             f"RGB or RGBA.") from exc


# -- fingerprints ---------------------------------------------------------------------------------
_fingerprints: OrderedDict[tuple, str] = OrderedDict()
_fingerprints_lock = threading.Lock()
_RACY_SECONDS = 2.0


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def image_fingerprint(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes: LoadImage's cache fingerprint, so an edited input re-runs.

    A file whose size, inode and modification and change times are unchanged is not hashed twice
    (unless it was modified within the last 2 s, when a same-tick edit could hide behind unchanged times).
    """
    path = Path(path)
    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        with _fingerprints_lock:
            if key in _fingerprints:
                _fingerprints.move_to_end(key)
                return _fingerprints[key]
        digest = _sha256_file(path)
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{path}: no such file.") from exc
    except IsADirectoryError as exc:
        raise ImageLoadError(f"{path}: is a folder, not an image file.") from exc
    if time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > _RACY_SECONDS:
        with _fingerprints_lock:
            _fingerprints[key] = digest
            while len(_fingerprints) > 512:
                _fingerprints.popitem(last=False)
    return digest
