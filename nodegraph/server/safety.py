"""The server's defences: who may talk to it, how much it reads, where file names may lead.

- **Token** (``--token`` / ``NODEGRAPH_TOKEN``): every request and the websocket must carry it, as
  ``Authorization: Bearer TOKEN`` or a ``token=TOKEN`` query parameter (browsers cannot set headers
  on websockets); compared in constant time.
- **Origin**: without ``--enable-cors-header`` no CORS header is sent, and a request whose
  ``Origin`` names another host than its ``Host`` is refused (a web page cannot make the browser
  queue prompts on this machine). Bound to a loopback address, the ``Host`` must be a loopback name
  too (a DNS-rebinding page cannot reach the server under a name of its own).
- **Sizes**: JSON bodies are read up to a limit and nested at most ``max_depth`` deep; uploads are
  bounded by aiohttp's ``client_max_size``.
- **Paths**: :func:`contained` joins untrusted parts to a folder and returns the file only if it
  is inside that folder after resolving ``..``, symlinks, absolute parts, drive letters,
  backslashes and NUL bytes.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def json_error(status: int, message: str, kind: str = "bad_request") -> web.Response:
    """A JSON error body in ComfyUI's error shape."""
    return web.json_response({"error": {"type": kind, "message": message, "details": message,
                                        "extra_info": {}}, "node_errors": {}}, status=status)


# -- middlewares ----------------------------------------------------------------------------------
def is_loopback(host: str | None) -> bool:
    """Whether a host name or address is this machine's loopback (names are not resolved)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str | None:
    try:
        return urlsplit("//" + host_header).hostname
    except ValueError:
        return None


def guard_middleware(*, token: str | None, cors_origin: str | None, loopback_only: bool) -> Any:
    """The middleware applying the rules of the module docstring, in that order."""
    expected = token.encode("utf-8") if token else None

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if loopback_only and not is_loopback(_host_name(host)):
            return json_error(403, f"this server answers to loopback host names only, not {host!r}",
                              "forbidden_host")
        origin = request.headers.get("Origin")
        if cors_origin is None and origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return json_error(403, "cross-origin requests are refused (start the server with "
                                  "--enable-cors-header ORIGIN to allow a web page)", "forbidden_origin")
        if cors_origin is not None and request.method == "OPTIONS":
            return _cors(web.Response(), cors_origin)
        if expected is not None and not _token_ok(request, expected):
            return json_error(401, "a token is required: send 'Authorization: Bearer TOKEN' or "
                              "add token=TOKEN to the URL", "unauthorized")
        response = await handler(request)
        return _cors(response, cors_origin) if cors_origin is not None else response

    return guard


def _token_ok(request: web.Request, expected: bytes) -> bool:
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else request.query.get("token", "")
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected)


def _cors(response: web.StreamResponse, origin: str) -> web.StreamResponse:
    if response.prepared:  # a websocket or a streamed file: its headers are gone already
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Methods"] = "POST, GET, DELETE, PUT, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
    response.headers["Access-Control-Allow-Credentials"] = "true"
    return response


# -- request bodies -------------------------------------------------------------------------------
class BadRequest(Exception):
    """A request the server refuses; ``status`` and ``message`` become the JSON error."""

    def __init__(self, message: str, status: int = 400, kind: str = "bad_request"):
        super().__init__(message)
        self.status = status
        self.kind = kind

    def response(self) -> web.Response:
        return json_error(self.status, str(self), self.kind)


async def read_json(request: web.Request, *, limit: int, max_depth: int,
                    empty: Any = None) -> Any:
    """The request's JSON body: at most ``limit`` bytes, nested at most ``max_depth`` deep.
    An empty body gives ``empty`` (BadRequest when ``empty`` is None)."""
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"the request body is larger than {limit} bytes", 413, "too_large")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the request body is larger than {limit} bytes", 413, "too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if empty is None:
            raise BadRequest("the request body is empty; send a JSON object")
        return empty
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {str(exc)[:200]}") from None
    check_depth(data, max_depth)
    return data


def check_depth(data: Any, max_depth: int) -> None:
    """BadRequest if lists and objects are nested more than ``max_depth`` deep."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            raise BadRequest(f"the JSON is nested more than {max_depth} levels deep")
        stack.extend((child, depth + 1) for child in children)


# -- paths ----------------------------------------------------------------------------------------
def clean_parts(text: str, *, single: bool = False) -> list[str] | None:
    """The path segments of an untrusted relative path (``/`` or ``\\`` separated), or None if it is
    absolute, has a drive, ``..``, a NUL byte or control characters; ``single`` allows one segment only."""
    if not isinstance(text, str) or "\x00" in text or any(ord(c) < 32 for c in text):
        return None
    if text.startswith(("/", "\\")) or (len(text) > 1 and text[1] == ":"):
        return None
    parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or (single and len(parts) != 1):
        return None
    return parts


def contained(root: Path, *parts: str) -> Path | None:
    """``root`` joined with clean segments, resolved (symlinks followed), if it stays inside ``root``."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, *parts))
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        return None
    return Path(real)
