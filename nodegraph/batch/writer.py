"""Writing a batch's outputs exactly once: atomic files and the ``results.jsonl`` log.

Only the coordinator writes into the batch folder. Each output goes to a temporary file in the
same folder, is flushed to disk (fsync), then linked to its final name only if that name is free;
the folder is fsynced after. A reader therefore sees a complete file or none, and a second write of
the same output (an item re-run after a crash) never replaces the first. ``results.jsonl`` gets
one line per finished item, appended and fsynced *after* its files, so a line always describes
files that exist.

Output names: ``{index:06d}-{key}-{node}-{batch_element}{ext}`` (``.png`` for SaveImage).
PNGs get a ``nodegraph_batch`` text chunk with the item's index, key and overrides, beside the
graph chunk SaveImage embeds.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fileio import fsync_dir

RESULTS = "results.jsonl"
ERRORS = "errors.jsonl"
BATCH_CHUNK = "nodegraph_batch"
TEMP_SUFFIX = ".ngtmp"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")


@dataclass(frozen=True)
class Output:
    """One file an item produced: the output node's id, the element of its batch, the file
    extension (``.png``) and the bytes."""

    node: str
    element: int
    ext: str
    data: bytes


def output_name(index: int, key: str, node: str, element: int, ext: str) -> str:
    """``{index:06d}-{key}-{node}-{element}{ext}``; a node id is made file-name safe."""
    safe_node = _UNSAFE.sub("_", node).strip(".") or "node"
    safe_ext = ext if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", ext or "") else ".bin"
    return f"{index:06d}-{key}-{safe_node}-{element}{safe_ext}"


def atomic_write(path: str | os.PathLike[str], data: bytes, *, replace: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, link or rename, fsync of the
    folder). Without ``replace`` an existing file is kept; returns False in that case, True if
    this call created the file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            created = True
        else:
            created = _link_exclusive(tmp, path)
        fsync_dir(path.parent)
        return created
    finally:
        if tmp.exists():
            tmp.unlink()


def _link_exclusive(tmp: Path, final: Path) -> bool:
    try:
        os.link(tmp, final)  # atomic and exclusive
        return True
    except FileExistsError:
        return False
    except OSError:
        pass  # no hard links here (some network/FAT file systems): reserve the name, then replace
    try:
        fd = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    os.replace(tmp, final)
    return True


def remove_temp_files(folder: Path) -> int:
    """Delete temporary files an interrupted writer left in ``folder``; returns how many."""
    count = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX):
                p.unlink(missing_ok=True)
                count += 1
    return count


def add_png_text(data: bytes, keyword: str, text: str) -> bytes:
    """The PNG ``data`` with one more text chunk before IEND (``iTXt``, UTF-8). Other bytes are
    kept as they are; data that is not a PNG is returned unchanged."""
    if not data.startswith(_PNG_MAGIC):
        return data
    end = data.rfind(b"IEND")
    if end < 12:
        return data
    body = keyword.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8")
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"iTXt" + body) & 0xFFFFFFFF)
    at = end - 4  # the IEND chunk starts with its length
    return data[:at] + chunk + data[at:]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- JSON lines -----------------------------------------------------------------------------------
def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines file; a torn last line (a crash mid-append) is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def repair_jsonl(path: Path) -> None:
    """Cut a torn last line off (so the next append starts on a line of its own)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())


class JsonlLog:
    """An append-only JSON-lines file; every record is flushed and fsynced before returning."""

    def __init__(self, path: Path):
        self.path = path
        repair_jsonl(path)
        self._file = open(path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


class BatchWriter:
    """Writes items' outputs into the batch folder and logs them (coordinator side)."""

    def __init__(self, out_dir: str | os.PathLike[str]):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.removed_temp = remove_temp_files(self.out_dir)
        self.results = JsonlLog(self.out_dir / RESULTS)
        self.errors = JsonlLog(self.out_dir / ERRORS)
        self.kept_existing = 0  # outputs already on disk from an earlier attempt

    def write_item(self, index: int, key: str, overrides: list[list[Any]], outputs: list[Output],
                   *, seconds: float, worker: str, attempts: int = 1,
                   threads: int | None = None) -> dict[str, Any]:
        """Write every output of a finished item, then its ``results.jsonl`` line (returned)."""
        meta = json.dumps({"index": index, "key": key, "overrides": overrides},
                          sort_keys=True, ensure_ascii=False)
        files = []
        for out in outputs:
            data = add_png_text(out.data, BATCH_CHUNK, meta) if out.ext.lower() == ".png" else out.data
            name = output_name(index, key, out.node, out.element, out.ext)
            path = self.out_dir / name
            if not atomic_write(path, data):
                self.kept_existing += 1
                data = path.read_bytes()  # the first write wins; report what is on disk
            files.append({"path": name, "sha256": sha256_bytes(data), "node": out.node,
                          "element": out.element, "bytes": len(data)})
        record = {"index": index, "key": key, "overrides": overrides, "files": files,
                  "seconds": round(seconds, 4), "worker": worker, "attempts": attempts}
        if threads is not None:
            record["threads"] = threads
        self.results.append(record)
        return record

    def write_error(self, index: int, key: str, overrides: list[list[Any]], *, kind: str,
                    error: str, worker: str | None, attempts: int) -> dict[str, Any]:
        record = {"index": index, "key": key, "overrides": overrides, "kind": kind,
                  "error": error, "worker": worker, "attempts": attempts}
        self.errors.append(record)
        return record

    def close(self) -> None:
        self.results.close()
        self.errors.close()


def finished_items(out_dir: Path, keys: dict[int, str], *, verify: str = "size"
                   ) -> tuple[dict[int, dict[str, Any]], list[Path]]:
    """Items recorded in ``results.jsonl`` whose key still matches and whose files exist with the
    recorded size (``verify="sha256"``: the recorded SHA-256 — it reads every output): index →
    record. Also returns the files of records that failed the check and no longer hold what was
    recorded (to be removed, so that the item's re-run can write them again)."""
    done: dict[int, dict[str, Any]] = {}
    stale: list[Path] = []
    for record in read_jsonl(out_dir / RESULTS):
        try:
            index, key, files = int(record["index"]), str(record["key"]), list(record["files"])
        except (KeyError, TypeError, ValueError):
            continue
        if keys.get(index) != key:
            continue
        bad = []
        missing = False
        for f in files:
            path = out_dir / str(f.get("path", ""))
            if not path.is_file():
                missing = True
            elif path.stat().st_size != f.get("bytes", path.stat().st_size) or (
                    verify == "sha256" and sha256_file(path) != f.get("sha256")):
                bad.append(path)
        if not missing and not bad:
            done[index] = record
        else:
            stale.extend(bad)
    return done, [p for p in stale if int(p.name.split("-", 1)[0]) not in done]
