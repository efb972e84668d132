"""The HTTP endpoints, with ComfyUI's paths, request bodies and response shapes (each also under
``/api``, as ComfyUI serves them). docs/server.md lists them with the differences from ComfyUI's."""
from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

from aiohttp import web

from .. import __version__
from .config import ServerConfig
from .engine import Engine, machine, ram
from .files import upload, view
from .hub import Hub
from .prompts import check_prompt, refusal
from .safety import BadRequest, read_json
from .shapes import history, now_ms, number_json, object_info, queue_entry

SENSITIVE_EXTRA_DATA = ("auth_token_comfy_org", "api_key_comfy_org")
"""ComfyUI keeps these ``extra_data`` keys out of its queue and history; so does NodeGraph (it has
no use for them)."""


class Routes:
    """The handlers, bound to one engine, hub and configuration."""

    def __init__(self, engine: Engine, hub: Hub, config: ServerConfig):
        self.engine = engine
        self.hub = hub
        self.config = config

    def table(self) -> list[web.RouteDef]:
        pairs = [
            ("GET", "/", self.root), ("GET", "/ws", self.hub.handle),
            ("GET", "/prompt", self.get_prompt), ("POST", "/prompt", self.post_prompt),
            ("GET", "/queue", self.get_queue), ("POST", "/queue", self.post_queue),
            ("POST", "/interrupt", self.post_interrupt),
            ("GET", "/history", self.get_history), ("GET", "/history/{prompt_id}", self.get_history_item),
            ("POST", "/history", self.post_history),
            ("GET", "/view", self.view), ("POST", "/upload/image", self.upload_image),
            ("POST", "/upload/mask", self.upload_mask),
            ("GET", "/object_info", self.get_object_info),
            ("GET", "/object_info/{node_class}", self.get_object_info_node),
            ("GET", "/system_stats", self.system_stats), ("GET", "/embeddings", self.embeddings),
            ("GET", "/models", self.model_types), ("GET", "/models/{folder}", self.models),
            ("POST", "/free", self.free),
        ]
        routes = [web.route(m, p, h) for m, p, h in pairs]
        routes += [web.route(m, "/api" + p, h) for m, p, h in pairs if p != "/"]
        return routes

    async def _json(self, request: web.Request, empty: Any = None) -> Any:
        return await read_json(request, limit=self.config.max_json_bytes,
                               max_depth=self.config.max_json_depth, empty=empty)

    # -- prompts and the queue -----------------------------------------------------------
    async def root(self, _request: web.Request) -> web.Response:
        return web.json_response({"name": "NodeGraph", "version": __version__,
                                  "api": "ComfyUI-compatible HTTP and websocket API (docs/server.md)"})

    async def get_prompt(self, _request: web.Request) -> web.Response:
        return web.json_response(self.hub.status())

    async def post_prompt(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, dict) or "prompt" not in body:
            raise refusal("no_prompt", "No prompt provided", "No prompt provided")
        targets = body.get("partial_execution_targets")
        if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
            raise BadRequest("partial_execution_targets must be a list of node ids")
        prompt_id, number, extra_data, client_id = _queue_fields(body)
        loop = asyncio.get_running_loop()
        checked = await loop.run_in_executor(None, check_prompt, body["prompt"], self.engine.registry,
                                             self.engine.options, targets)
        item = self.engine.queue.put(
            checked.graph, targets=checked.outputs, number=number, front=bool(body.get("front")),
            validate=False, client_id=client_id, item_id=prompt_id, snapshot=False,
            extra={"comfy": {"prompt": body["prompt"], "extra_data": extra_data,
                             "outputs_to_execute": checked.outputs}})
        return web.json_response({"prompt_id": item.id, "number": number_json(item.number),
                                  "node_errors": checked.node_errors})

    async def get_queue(self, _request: web.Request) -> web.Response:
        running = self.engine.queue.running()
        reg = self.engine.registry
        return web.json_response({
            "queue_running": [queue_entry(running, reg)] if running is not None else [],
            "queue_pending": [queue_entry(i, reg) for i in self.engine.queue.pending()]})

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await self._json(request, empty={})
        if not isinstance(body, dict):
            raise BadRequest("send {\"delete\": [prompt ids]} or {\"clear\": true}")
        if body.get("clear"):
            self.engine.queue.clear()
        if "delete" in body:
            self.engine.queue.cancel(_ids(body["delete"]))
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        body = await self._json(request, empty={})
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        self.engine.queue.interrupt(prompt_id if isinstance(prompt_id, str) else None)
        return web.Response(status=200)

    # -- history -------------------------------------------------------------------------
    async def get_history(self, request: web.Request) -> web.Response:
        entries = self.engine.queue.history.entries()
        max_items = _int_query(request, "max_items")
        offset = _int_query(request, "offset", -1)
        if offset < 0:
            offset = max(0, len(entries) - max_items) if max_items is not None else 0
        chosen = entries[offset: offset + max_items if max_items is not None else None]
        return web.json_response(history(chosen, self.engine.registry, self.engine.served_folders()))

    async def get_history_item(self, request: web.Request) -> web.Response:
        entry = self.engine.queue.history.get(request.match_info["prompt_id"])
        found = [entry] if entry is not None else []
        return web.json_response(history(found, self.engine.registry, self.engine.served_folders()))

    async def post_history(self, request: web.Request) -> web.Response:
        body = await self._json(request, empty={})
        if not isinstance(body, dict):
            raise BadRequest("send {\"delete\": [prompt ids]} or {\"clear\": true}")
        if body.get("clear"):
            self.engine.queue.history.clear()
        if "delete" in body:
            self.engine.queue.history.delete(_ids(body["delete"]))
        return web.Response(status=200)

    # -- files ---------------------------------------------------------------------------
    async def view(self, request: web.Request) -> web.StreamResponse:
        return await view(request, self.engine)

    async def upload_image(self, request: web.Request) -> web.Response:
        return await upload(request, self.engine, self.config.max_upload_bytes)

    async def upload_mask(self, request: web.Request) -> web.Response:
        return await upload(request, self.engine, self.config.max_upload_bytes, mask=True)

    # -- what the server has -------------------------------------------------------------
    async def get_object_info(self, _request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, object_info, self.engine.registry, self.engine.options)
        return web.json_response(info)

    async def get_object_info_node(self, request: web.Request) -> web.Response:
        info = object_info(self.engine.registry, self.engine.options, request.match_info["node_class"])
        return web.json_response(info)

    async def system_stats(self, _request: web.Request) -> web.Response:
        devices = await asyncio.get_running_loop().run_in_executor(None, self.engine.devices)
        total, free = ram()
        system = {**machine(), "ram_total": total, "ram_free": free,
                  "comfyui_version": f"NodeGraph {__version__}", "nodegraph_version": __version__,
                  "argv": redacted_argv(sys.argv)}
        return web.json_response({"system": system, "devices": devices})

    async def embeddings(self, _request: web.Request) -> web.Response:
        names = self.engine.list_models("embeddings") or []
        return web.json_response([os.path.splitext(n)[0] for n in names])

    async def model_types(self, _request: web.Request) -> web.Response:
        return web.json_response(self.engine.model_categories())

    async def models(self, request: web.Request) -> web.Response:
        files = self.engine.list_models(request.match_info["folder"])
        if files is None:
            raise BadRequest(f"there is no model folder {request.match_info['folder']!r} (see GET /models)",
                             404, "not_found")
        return web.json_response(files)

    async def free(self, request: web.Request) -> web.Response:
        body = await self._json(request, empty={})
        if isinstance(body, dict) and (body.get("unload_models") or body.get("free_memory")):
            self.engine.free()
        return web.Response(status=200)


def _queue_fields(body: dict[str, Any]) -> tuple[str, float | None, dict[str, Any], str | None]:
    """prompt_id, number, extra_data (with client_id and create_time) and client_id of a POST /prompt."""
    prompt_id = body.get("prompt_id") or str(uuid.uuid4())
    if not isinstance(prompt_id, str) or len(prompt_id) > 128:
        raise BadRequest("prompt_id must be a string of at most 128 characters")
    number = body.get("number")
    if number is not None:
        try:
            number = float(number)
        except (TypeError, ValueError):
            raise BadRequest("number must be a number") from None
    extra_data = body.get("extra_data") or {}
    if not isinstance(extra_data, dict):
        raise BadRequest("extra_data must be an object")
    extra_data = {k: v for k, v in extra_data.items() if k not in SENSITIVE_EXTRA_DATA}
    client_id = body.get("client_id")
    if client_id is not None:
        if not isinstance(client_id, str) or len(client_id) > 128:
            raise BadRequest("client_id must be a string of at most 128 characters")
        extra_data["client_id"] = client_id
    extra_data["create_time"] = now_ms()
    return prompt_id, number, extra_data, client_id or None


def _ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest("'delete' must be a list of prompt ids")
    return value


def _int_query(request: web.Request, name: str, default: int | None = None) -> Any:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None


def redacted_argv(argv: list[str]) -> list[str]:
    """The command line without the token's value."""
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
        elif arg == "--token":
            out.append(arg)
            hide = True
        elif arg.startswith("--token="):
            out.append("--token=***")
        else:
            out.append(arg)
    return out
