"""Helpers of the server tests (imported as ``serverkit``): a real server on 127.0.0.1 on a free port,
and a real client (aiohttp's) that posts prompts and follows the websocket."""
from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from nodegraph import Registry, RunContext, String, node
from nodegraph.executor import OutputCache
from nodegraph.history import History
from nodegraph.plugins import import_folder
from nodegraph.server import Engine, ServerConfig, ServerThread

ROOT = Path(__file__).resolve().parents[2]
ngtest = import_folder(ROOT / "tests" / "engine" / "packs" / "ngtest")
GATES: dict[str, threading.Event] = {}
T = TypeVar("T")
TIMEOUT = 60.0


@node("Gate", category="debug", params=[String("name", "")], outputs={"value": "INT"}, not_cacheable=True)
def gate(name: str, ctx: RunContext) -> int:
    """Blocks until the test opens its gate (interruptible)."""
    while not GATES.setdefault(name, threading.Event()).wait(0.005):
        ctx.check_interrupt()
    return 1


def ngtest_registry() -> Registry:
    """The torch-free test nodes (and Gate) under bare ids, as ComfyUI prompts name types."""
    reg = Registry()
    for t in ngtest.nodegraph_register_types():
        reg.add_type(t)
    for spec in [*ngtest.NODES, gate]:
        reg.add_node(spec)
    return reg


@dataclass
class Running:
    """A server started by a test: its URL, engine and folders."""

    url: str
    engine: Engine
    thread: ServerThread

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:] + "/ws"


def start_server(tmp: Path, registry: Registry | None = None, *, options: Any = None,
                 **config: Any) -> Running:
    """A server on a free port with its own output cache and an in-memory history."""
    from nodegraph import RunOptions

    options = options or RunOptions(device="cpu", dtype="fp32", output_dir=tmp / "output")
    engine = Engine(options, input_dir=tmp / "input", registry=registry, cache=OutputCache(),
                    history=History())
    thread = ServerThread(engine, ServerConfig(port=0, input_dir=tmp / "input", **config))
    return Running(thread.start(), engine, thread)


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


# -- prompts --------------------------------------------------------------------------------------
def const_sink(value: int = 3) -> dict[str, Any]:
    return {"1": {"class_type": "Const", "inputs": {"value": value}},
            "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}}}


def steps_prompt(steps: int, sleep: float = 0.002, value: int = 1) -> dict[str, Any]:
    return {"1": {"class_type": "Const", "inputs": {"value": value}},
            "2": {"class_type": "Steps", "inputs": {"steps": steps, "sleep": sleep, "x": ["1", 0]}},
            "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}}}


def gate_prompt(name: str) -> dict[str, Any]:
    GATES[name] = threading.Event()
    return {"1": {"class_type": "Gate", "inputs": {"name": name}},
            "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}}}


# -- the client -----------------------------------------------------------------------------------
@dataclass
class Followed:
    """What one socket saw of one prompt: JSON messages (type, data) and binary frames."""

    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    others: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Messages about other prompts that came meanwhile."""

    def types(self) -> list[str]:
        return [t for t, _ in self.messages]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for t, d in self.messages if t == kind]


class Client:
    """One HTTP session (and websockets) against a running server."""

    def __init__(self, url: str, token: str | None = None):
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self.session = aiohttp.ClientSession(headers=self.headers)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.session is not None
        await self.session.close()

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.get(self.url + path, params=params) as r:
            return r.status, await _body(r)

    async def get_bytes(self, path: str, **params: Any) -> tuple[int, bytes, Any]:
        assert self.session is not None
        async with self.session.get(self.url + path, params=params) as r:
            return r.status, await r.read(), r.headers

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        assert self.session is not None
        if body is not None:
            kw["json"] = body
        async with self.session.post(self.url + path, **kw) as r:
            return r.status, await _body(r)

    async def queue(self, prompt: dict[str, Any], client_id: str | None = None, **fields: Any) -> str:
        body = {"prompt": prompt, **fields}
        if client_id is not None:
            body["client_id"] = client_id
        status, reply = await self.post("/prompt", body)
        assert status == 200, reply
        return reply["prompt_id"]

    async def socket(self, client_id: str) -> Socket:
        assert self.session is not None
        ws = await self.session.ws_connect(self.url.replace("http", "ws", 1) + "/ws",
                                           params={"clientId": client_id})
        socket = Socket(ws)
        first = await socket.next_json()
        assert first[0] == "status" and first[1]["sid"] == client_id, first
        return socket


class Socket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws

    async def next(self) -> tuple[str, Any]:
        msg = await self.ws.receive(timeout=TIMEOUT)
        if msg.type == aiohttp.WSMsgType.BINARY:
            return "binary", msg.data
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        data = json.loads(msg.data)
        return data["type"], data["data"]

    async def next_json(self) -> tuple[str, Any]:
        while True:
            kind, data = await self.next()
            if kind != "binary":
                return kind, data

    async def follow(self, prompt_id: str) -> Followed:
        """Messages until ``executing`` with node null for ``prompt_id`` (other prompts' skipped)."""
        seen = Followed()
        while True:
            kind, data = await self.next()
            if kind == "binary":
                seen.frames.append(data)
                continue
            if isinstance(data, dict) and data.get("prompt_id") not in (None, prompt_id):
                seen.others.append((kind, data))
                continue
            seen.messages.append((kind, data))
            if kind == "executing" and data["node"] is None and data["prompt_id"] == prompt_id:
                return seen

    async def until(self, predicate: Callable[[str, Any], bool]) -> tuple[str, Any]:
        while True:
            kind, data = await self.next()
            if predicate(kind, data):
                return kind, data

    async def close(self) -> None:
        await self.ws.close()


async def _body(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    try:
        return json.loads(text)
    except ValueError:
        return text
