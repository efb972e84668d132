"""The settings of ``nodegraph serve`` (each has a command-line option; see docs/server.md)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_TOKEN = "NODEGRAPH_TOKEN"
DEFAULT_PORT = 8188  # ComfyUI's, so scripts change nothing but the host when it is elsewhere


@dataclass(frozen=True)
class ServerConfig:
    """Where the server listens and what it lets clients do.

    ``host`` 127.0.0.1 unless told otherwise; ``token`` (or ``NODEGRAPH_TOKEN``) required on every
    request when set; ``cors_origin`` the one origin CORS headers name (none by default); uploads
    up to ``max_upload_mb``; JSON bodies up to ``max_json_mb``, nested at most ``max_json_depth``."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    cors_origin: str | None = None
    input_dir: Path = Path("input")
    max_upload_mb: float = 100.0
    max_json_mb: float = 32.0
    max_json_depth: int = 64

    def __post_init__(self) -> None:
        if self.token is not None and not self.token:
            raise ValueError("the token must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not between 0 and 65535")
        for name in ("max_upload_mb", "max_json_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_json_depth < 8:
            raise ValueError("max_json_depth must be at least 8 (prompts nest about 5 deep)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_json_bytes(self) -> int:
        return int(self.max_json_mb * 1024 * 1024)


def token_from_env(given: str | None) -> str | None:
    """The token given on the command line, else ``NODEGRAPH_TOKEN`` (empty means none)."""
    return given if given else (os.environ.get(ENV_TOKEN) or None)
