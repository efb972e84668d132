"""The aiohttp application and its lifecycle: :func:`create_app`, :class:`Server` (in a running
event loop) and :class:`ServerThread` (in a thread of its own: tests, benchmarks, an editor)."""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from aiohttp import web

from .config import ServerConfig
from .engine import Engine
from .hub import Hub
from .prompts import PromptRefused
from .routes import Routes
from .safety import BadRequest, guard_middleware, is_loopback, json_error

log = logging.getLogger("nodegraph.server")

ENGINE = web.AppKey("engine", Engine)
HUB = web.AppKey("hub", Hub)


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refusals raised by handlers become their JSON responses; anything unexpected a 500 that
    says what happened (and is logged with its traceback)."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return exc.response()
    except PromptRefused as exc:
        log.info("prompt refused: %s", exc)
        return web.json_response(exc.body(), status=400)
    except web.HTTPRequestEntityTooLarge as exc:
        return json_error(413, exc.text or "the request is too large", "too_large")
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return json_error(500, f"{type(exc).__name__}: {exc}", "server_error")


def create_app(engine: Engine, config: ServerConfig) -> web.Application:
    """The application serving ``engine`` under ``config``'s rules."""
    guard = guard_middleware(token=config.token, cors_origin=config.cors_origin,
                             loopback_only=is_loopback(config.host))
    app = web.Application(client_max_size=config.max_upload_bytes + (64 << 10),  # + the form's other fields
                          middlewares=[guard, errors_middleware])
    hub = Hub(engine)
    app[ENGINE] = engine
    app[HUB] = hub
    app.on_startup.append(hub.start)
    app.on_shutdown.append(hub.stop)
    app.add_routes(Routes(engine, hub, config).table())
    return app


class Server:
    """The application listening on ``config.host``:``config.port`` (port 0: a free one)."""

    def __init__(self, engine: Engine, config: ServerConfig):
        self.engine = engine
        self.config = config
        self.app = create_app(engine, config)
        self._runner: web.AppRunner | None = None
        self.addresses: list[Any] = []

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.addresses = list(self._runner.addresses)

    @property
    def url(self) -> str:
        """``http://host:port`` of the first address listened on."""
        host, port = self.addresses[0][:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.engine.close()


class ServerThread:
    """A :class:`Server` on an event loop in a daemon thread::

        thread = ServerThread(engine, ServerConfig(port=0))
        url = thread.start()
        ...
        thread.stop()
    """

    def __init__(self, engine: Engine, config: ServerConfig):
        self.server = Server(engine, config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nodegraph-server", daemon=True)

    def start(self, timeout: float = 30.0) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout)
        return self.server.url

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self, timeout: float = 30.0) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._loop.close()
