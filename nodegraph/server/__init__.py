"""``nodegraph serve``: ComfyUI's HTTP and websocket API served from NodeGraph's engine, so scripts
and tools written for ComfyUI's server drive NodeGraph by changing nothing but the address.

    from nodegraph.server import Engine, ServerConfig, ServerThread
    engine = Engine(RunOptions(output_dir="output"), input_dir="input")
    url = ServerThread(engine, ServerConfig(port=0)).start()

- :mod:`.engine`   the one adapter to the engine (session, run queue and history, folders, models)
- :mod:`.app`      the aiohttp application and its lifecycle
- :mod:`.routes`   the HTTP endpoints; :mod:`.files` /view and the uploads
- :mod:`.prompts`  checking a ComfyUI prompt as ComfyUI does (``node_errors``)
- :mod:`.hub`      the websocket: queue events as ComfyUI's messages, preview frames
- :mod:`.shapes`   ComfyUI's JSON shapes (object_info, queue, history)
- :mod:`.safety`   token, origin, sizes, paths

Importing this package imports aiohttp; the ``nodegraph`` command imports it only for ``serve``.
See docs/server.md.
"""
from __future__ import annotations

from .app import Server, ServerThread, create_app
from .config import ServerConfig
from .engine import Engine

__all__ = ["Engine", "Server", "ServerConfig", "ServerThread", "create_app"]
