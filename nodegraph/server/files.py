"""``GET /view``, ``POST /upload/image`` and ``POST /upload/mask``: files in and out of the served
folders (``output``, ``input``, ``temp``), never anywhere else (see :func:`safety.contained`).
Uploads must be images (PNG, JPEG, WebP, GIF, BMP, TIFF: checked by reading them, not by their
name) and are written atomically; a name already taken gets ``name (1).png`` unless ``overwrite``."""
from __future__ import annotations

import asyncio
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from ..fileio import give_usual_mode
from .engine import Engine
from .safety import BadRequest, check_depth, clean_parts, contained

IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
_ANNOTATION = re.compile(r"^(.*) \[(output|input|temp)\]$")


def split_annotation(name: str) -> tuple[str, str | None]:
    """ComfyUI's annotated names: ``"a.png [temp]"`` → ``("a.png", "temp")``."""
    m = _ANNOTATION.match(name)
    return (m.group(1), m.group(2)) if m else (name, None)


def locate(engine: Engine, filename: str, subfolder: str, kind: str) -> Path:
    """The existing file a (filename, subfolder, type) reference names, inside its folder.
    BadRequest: 400 for a bad name or type, 403 for a path leaving the folder, 404 if missing."""
    filename, annotated = split_annotation(filename)
    root = engine.folder(annotated or kind)
    if root is None:
        raise BadRequest(f"type {kind!r} is not one of output, input, temp")
    name = clean_parts(filename, single=True)
    if name is None:
        raise BadRequest(f"{filename!r} is not a plain file name")
    sub = clean_parts(subfolder)
    if sub is None:
        raise BadRequest(f"subfolder {subfolder!r} leaves the {annotated or kind} folder", 403, "forbidden")
    path = contained(root, *sub, *name)
    if path is None:
        raise BadRequest(f"{filename!r} leaves the {annotated or kind} folder", 403, "forbidden")
    if not path.is_file():
        raise BadRequest(f"{'/'.join([*sub, *name])} was not found in the {annotated or kind} folder",
                         404, "not_found")
    return path


# -- /view ----------------------------------------------------------------------------------------
async def view(request: web.Request, engine: Engine) -> web.StreamResponse:
    query = request.query
    if not query.get("filename"):
        raise BadRequest("filename is required", 404, "not_found")
    path = locate(engine, query["filename"], query.get("subfolder", ""), query.get("type", "output"))
    shown = path.name.replace('"', "")
    preview, channel = query.get("preview"), query.get("channel", "")
    if preview is None and channel not in ("rgb", "a"):
        return web.FileResponse(path, headers={"Content-Disposition": f'filename="{shown}"'})
    loop = asyncio.get_running_loop()
    body, fmt = await loop.run_in_executor(None, converted, path, preview, channel)
    if preview is not None:
        shown = os.path.splitext(shown)[0] + "." + fmt
    return web.Response(body=body, content_type=f"image/{fmt}",
                        headers={"Content-Disposition": f'filename="{shown}"'})


def converted(path: Path, preview: str | None, channel: str) -> tuple[bytes, str]:
    """ComfyUI's ``/view`` conversions: ``preview=webp;90`` / ``jpeg;90`` re-encodes, ``channel=rgb``
    drops the alpha, ``channel=a`` gives the alpha alone (as the alpha of a transparent image)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if preview is not None:
            parts = preview.split(";")
            fmt = parts[0] if parts[0] in ("webp", "jpeg") and "a" not in channel else "webp"
            quality = int(parts[-1]) if parts[-1].isdigit() else 90
            if fmt == "jpeg" or channel == "rgb":
                img = img.convert("RGB")
            out = io.BytesIO()
            img.save(out, format=fmt, quality=max(1, min(quality, 100)))
            return out.getvalue(), fmt
        if channel == "rgb":
            result = img.convert("RGB")
        else:
            alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
            result = Image.new("RGBA", img.size)
            result.putalpha(alpha)
        out = io.BytesIO()
        result.save(out, format="PNG")
        return out.getvalue(), "png"


# -- uploads --------------------------------------------------------------------------------------
async def upload(request: web.Request, engine: Engine, limit: int, *, mask: bool = False) -> web.Response:
    """Store the multipart field ``image`` (at most ``limit`` bytes) in the folder of ``type``
    (default input) under ``subfolder``; a mask upload first takes ``original_ref``'s image and
    gives it the mask's alpha."""
    post = await request.post()
    field = post.get("image")
    if not isinstance(field, web.FileField):
        raise BadRequest("send the image as a multipart form field named 'image'")
    data = field.file.read(limit + 1)
    if len(data) > limit:
        raise BadRequest(f"the upload is larger than {limit} bytes", 413, "too_large")
    parts = clean_parts(field.filename or "", single=True)
    if parts is None or parts[0].startswith(".") or Path(parts[0]).suffix.lower() not in IMAGE_EXTENSIONS:
        raise BadRequest(f"{field.filename!r} is not an image file name (allowed: "
                         + ", ".join(sorted(IMAGE_EXTENSIONS)) + ")")
    kind = str(post.get("type") or "input")
    root = engine.folder(kind)
    if root is None:
        raise BadRequest(f"type {kind!r} is not one of input, output, temp")
    subfolder = str(post.get("subfolder") or "")
    sub = clean_parts(subfolder)
    folder = contained(root, *sub) if sub is not None else None
    if folder is None:
        raise BadRequest(f"subfolder {subfolder!r} leaves the {kind} folder")
    overwrite = str(post.get("overwrite") or "").lower() in ("true", "1")
    loop = asyncio.get_running_loop()
    if mask:
        original = _original(engine, post.get("original_ref"))
        data = await loop.run_in_executor(None, masked, original, data)
    else:
        await loop.run_in_executor(None, check_image, data)
    name = await loop.run_in_executor(None, store, folder, parts[0], data, overwrite)
    return web.json_response({"name": name, "subfolder": "/".join(sub or []), "type": kind})


def check_image(data: bytes) -> str:
    """The image format of ``data`` (BadRequest if it is not an image of an allowed format)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            img.verify()
    except UnidentifiedImageError:
        raise BadRequest("the upload is not an image (PNG, JPEG, WebP, GIF, BMP or TIFF)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadRequest(f"the upload is not a readable image: {str(exc)[:200]}") from None
    if fmt not in IMAGE_FORMATS:
        raise BadRequest(f"{fmt} images are not accepted (allowed: PNG, JPEG, WebP, GIF, BMP, TIFF)")
    return fmt


def _original(engine: Engine, raw: Any) -> Path:
    if not isinstance(raw, str):
        raise BadRequest("a mask upload needs 'original_ref': JSON naming the image it belongs to")
    try:
        ref = json.loads(raw)
    except ValueError:
        raise BadRequest("'original_ref' is not valid JSON") from None
    check_depth(ref, 4)
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
        raise BadRequest("'original_ref' must be {\"filename\": ..., \"subfolder\": ..., \"type\": ...}")
    return locate(engine, ref["filename"], str(ref.get("subfolder") or ""), str(ref.get("type") or "output"))


def masked(original: Path, mask_data: bytes) -> bytes:
    """The original image with the mask image's alpha as its alpha, as a PNG keeping its text chunks."""
    from PIL import Image, PngImagePlugin

    check_image(mask_data)
    with Image.open(original) as img, Image.open(io.BytesIO(mask_data)) as mask:
        info = PngImagePlugin.PngInfo()
        for key, value in getattr(img, "text", {}).items():
            info.add_text(key, value)
        rgba = img.convert("RGBA")
        alpha = mask.convert("RGBA").getchannel("A")
        if alpha.size != rgba.size:
            raise BadRequest(f"the mask is {alpha.size[0]}x{alpha.size[1]} but the image is "
                             f"{rgba.size[0]}x{rgba.size[1]}")
        rgba.putalpha(alpha)
        out = io.BytesIO()
        rgba.save(out, format="PNG", pnginfo=info, compress_level=4)
        return out.getvalue()


def store(folder: Path, name: str, data: bytes, overwrite: bool) -> str:
    """Write ``data`` as ``folder/name`` atomically and return the name used: with ``overwrite`` the
    file is replaced; otherwise an identical file is reused and a different one keeps its name
    (the upload becomes ``name (1).ext``, ``name (2).ext``, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, ext = os.path.splitext(name)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=folder)
    try:
        give_usual_mode(fd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for i in range(10_000):
            candidate = name if i == 0 else f"{stem} ({i}){ext}"
            target = contained(folder, candidate)
            if target is None:  # a symlink of that name points elsewhere
                continue
            if overwrite:
                os.replace(tmp, folder / candidate)
                return candidate
            if os.path.lexists(folder / candidate):
                if target.is_file() and target.read_bytes() == data:
                    return candidate
                continue
            try:
                os.link(tmp, folder / candidate)  # fails if the name was taken meanwhile
            except FileExistsError:
                continue
            return candidate
        raise BadRequest(f"too many files named like {name!r}", 409, "conflict")
    finally:
        Path(tmp).unlink(missing_ok=True)
