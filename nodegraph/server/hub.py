"""The websocket side: ``/ws?clientId=...`` connections, and the run queue's events turned into
ComfyUI's messages.

A prompt's messages go to the socket of the ``client_id`` it was queued with (a prompt queued
without one is followed by every socket); ``status`` (the queue's length) goes to every socket.
The order of one run is ComfyUI's: ``execution_start``, ``execution_cached``, then per node that
runs ``executing`` → ``progress`` … (with binary preview frames) → ``executed``, and at the end
``execution_success`` | ``execution_error`` | ``execution_interrupted``, ``status`` and
``executing`` with ``node: null``. Queue events arrive on the worker thread; they are translated
there (previews encoded there too) and handed to the event loop, which sends them in order.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from ..events import NodeCached, NodeFinished, NodeStarted, Progress, RunFinished
from ..queue import ItemEvent, ItemFinished, ItemQueued, ItemsRemoved, ItemStarted, QueueEvent
from .engine import Engine
from .shapes import final_message, is_output_node, now_ms, ui_output

log = logging.getLogger("nodegraph.server")

PREVIEW_IMAGE = 1
"""ComfyUI's binary event type of a preview frame: 4 bytes big-endian event type, 4 bytes
big-endian image format (1 JPEG, 2 PNG), then the image file."""
JPEG, PNG = 1, 2
PREVIEW_MAX_SIDE = 512

Outgoing = tuple["str | None", "dict[str, Any] | bytes"]


@dataclass
class _Run:
    """What the hub remembers about the running item."""

    prompt_id: str
    client_id: str | None
    node: str | None = None
    cached: list[str] = field(default_factory=list)
    shown: list[dict[str, Any]] = field(default_factory=list)  # ``executed`` of cached nodes, held back
    cached_sent: bool = False


class Hub:
    """Websocket clients by id, and the queue's events as ComfyUI messages to them."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self._run: _Run | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: asyncio.Queue[Outgoing] | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # -- lifecycle (aiohttp signals) -----------------------------------------------------
    async def start(self, _app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        self._outbox = asyncio.Queue()
        self._task = asyncio.create_task(self._publish(), name="nodegraph-ws-publish")
        self._unsubscribe = self.engine.queue.subscribe(self.on_queue_event)

    async def stop(self, _app: web.Application) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for ws in list(self.sockets.values()):
            await ws.close(code=1001, message=b"server shutting down")
        if self._task is not None:
            self._task.cancel()

    # -- connections ---------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 16)
        await ws.prepare(request)
        sid = request.query.get("clientId", "")[:128] or uuid.uuid4().hex
        old = self.sockets.pop(sid, None)
        if old is not None:
            await old.close(code=1000, message=b"replaced by a new connection with the same clientId")
        self.sockets[sid] = ws
        try:
            await ws.send_json({"type": "status", "data": {"status": self.status(), "sid": sid}})
            run = self._run
            if run is not None and run.client_id == sid and run.node is not None:
                await ws.send_json({"type": "executing", "data": {
                    "node": run.node, "display_node": run.node, "prompt_id": run.prompt_id}})
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    log.warning("websocket %s closed with an error: %s", sid, ws.exception())
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
        return ws

    def status(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.engine.queue.remaining()}}

    # -- translation (any thread) ------------------------------------------------------------
    def on_queue_event(self, event: QueueEvent) -> None:
        if isinstance(event, ItemEvent):
            self._run_event(event)
        elif isinstance(event, ItemStarted):
            item = event.item
            self._run = _Run(item.id, item.client_id)
            self._send(item.client_id, "execution_start", {"prompt_id": item.id, "timestamp": now_ms()})
            self._broadcast_status()
        elif isinstance(event, ItemFinished):
            self._finished(event)
        elif isinstance(event, (ItemQueued, ItemsRemoved)):
            self._broadcast_status()

    def _run_event(self, wrapped: ItemEvent) -> None:
        run, event, sid = self._run, wrapped.event, wrapped.item.client_id
        if run is None or run.prompt_id != wrapped.item.id:
            return
        pid = run.prompt_id
        if isinstance(event, NodeCached):
            run.cached.append(event.node_id)
            if event.ui and (shown := self._executed(wrapped, event.node_id, event.ui)) is not None:
                run.shown.append(shown)
        elif isinstance(event, NodeStarted):
            self._flush_cached(run)
            run.node = event.node_id
            self._send(sid, "executing", {"node": event.node_id, "display_node": event.node_id,
                                          "prompt_id": pid})
        elif isinstance(event, Progress):
            self._send(sid, "progress", {"value": event.step, "max": event.total, "prompt_id": pid,
                                         "node": event.node_id})
            if event.preview is not None and self._listening(sid):
                frame = preview_frame(event.preview)
                if frame is not None:
                    self._post(sid, frame)
        elif isinstance(event, NodeFinished):
            if event.ui and (shown := self._executed(wrapped, event.node_id, event.ui)) is not None:
                self._send(sid, "executed", shown)
        elif isinstance(event, RunFinished):
            self._flush_cached(run)

    def _executed(self, wrapped: ItemEvent, node_id: str, ui: dict[str, Any]) -> dict[str, Any] | None:
        """The ``executed`` message of an output node that showed something, else None."""
        item = wrapped.item
        if not is_output_node(item.graph, self.engine.registry, node_id):
            return None
        output = ui_output(ui, self.engine.served_folders())
        if not output:
            return None
        return {"node": node_id, "display_node": node_id, "output": output, "prompt_id": item.id}

    def _flush_cached(self, run: _Run) -> None:
        """One ``execution_cached`` before the first node runs (ComfyUI sends it up front; the
        executor finds cached nodes as it goes, so a later cached node gets a message of its own),
        then the ``executed`` messages of the cached output nodes it names."""
        if run.cached or not run.cached_sent:
            self._send(run.client_id, "execution_cached", {"nodes": run.cached, "prompt_id": run.prompt_id,
                                                           "timestamp": now_ms()})
            for shown in run.shown:
                self._send(run.client_id, "executed", shown)
            run.cached, run.shown, run.cached_sent = [], [], True

    def _finished(self, event: ItemFinished) -> None:
        run, self._run = self._run, None
        sid = event.item.client_id
        if run is not None:
            self._flush_cached(run)
        kind, data = final_message(event.entry)
        self._send(sid, kind, data)
        self._broadcast_status()
        self._send(sid, "executing", {"node": None, "prompt_id": event.item.id})

    def _broadcast_status(self) -> None:
        self._post("*", {"type": "status", "data": {"status": self.status()}})

    def _send(self, sid: str | None, kind: str, data: dict[str, Any]) -> None:
        self._post(sid, {"type": kind, "data": data})

    def _listening(self, sid: str | None) -> bool:
        return bool(self.sockets) if sid is None else sid in self.sockets

    def _post(self, sid: str | None, message: dict[str, Any] | bytes) -> None:
        loop, outbox = self._loop, self._outbox
        if loop is None or outbox is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(outbox.put_nowait, (sid, message))
        except RuntimeError:  # the loop closed in between
            pass

    # -- sending (event loop) -------------------------------------------------------------
    async def _publish(self) -> None:
        assert self._outbox is not None
        while True:
            sid, message = await self._outbox.get()
            if sid is None or sid == "*":
                targets = list(self.sockets.values())
            else:
                ws = self.sockets.get(sid)
                targets = [ws] if ws is not None else []
            if not targets:
                continue
            text = message if isinstance(message, bytes) else json.dumps(message)
            for ws in targets:
                try:
                    if isinstance(text, bytes):
                        await ws.send_bytes(text)
                    else:
                        await ws.send_str(text)
                except (ConnectionError, RuntimeError) as exc:
                    log.debug("could not send to a websocket: %s", exc)


def preview_frame(preview: Any) -> bytes | None:
    """A live preview (a uint8 ``[H, W, 3]`` array or a PIL image) as ComfyUI's binary frame, or
    None for anything else (a node may report other kinds of previews)."""
    from PIL import Image

    if isinstance(preview, Image.Image):
        image = preview
    else:
        interface = getattr(preview, "__array_interface__", None)
        if interface is None or interface.get("typestr") != "|u1" or len(interface.get("shape", ())) != 3:
            return None
        try:
            image = Image.fromarray(preview)
        except (TypeError, ValueError):
            return None
    if image.mode != "RGB":
        image = image.convert("RGB")
    if max(image.size) > PREVIEW_MAX_SIDE:
        image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    buffer = io.BytesIO()
    buffer.write(struct.pack(">II", PREVIEW_IMAGE, JPEG))
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
