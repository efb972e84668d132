"""Reading ``nodegraph batch --progress json`` as it arrives: bytes from a pipe → complete text
lines → progress events (docs/batch.md, "JSON progress")."""
from __future__ import annotations

import json
from typing import Any


class LineBuffer:
    """Bytes as they arrive from a pipe → complete text lines; a partial last line waits for the
    rest (``flush`` returns it at the end of the stream)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        self._pending += bytes(data)
        *lines, self._pending = self._pending.split(b"\n")
        return [self._decode(line) for line in lines]

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, b""
        return [self._decode(rest)] if rest.strip() else []

    @staticmethod
    def _decode(line: bytes) -> str:
        return line.decode("utf-8", errors="replace").rstrip("\r")


def parse_event(line: str) -> dict[str, Any] | None:
    """A progress event (a JSON object with an ``"event"`` name), or None for any other line."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("event"), str):
        return data
    return None
