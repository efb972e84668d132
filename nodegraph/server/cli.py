"""``nodegraph serve``: ComfyUI's HTTP and websocket API on NodeGraph's engine."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from ..context import DEVICES, DTYPES, RunOptions
from ..plugins import pack_warnings
from .config import DEFAULT_PORT, ENV_TOKEN, ServerConfig, token_from_env

EXIT_OK, EXIT_INVALID = 0, 2

EPILOG = f"""\
Scripts and tools written for ComfyUI's server talk to this one unchanged: POST /prompt with an
API-format prompt, follow /ws?clientId=..., read /history, fetch images from /view. See
docs/server.md for every endpoint and the differences from ComfyUI.

safety: binds 127.0.0.1 unless --listen; with --token (or {ENV_TOKEN}) every request needs
'Authorization: Bearer TOKEN' or '?token=TOKEN'; no CORS header unless --enable-cors-header.

examples:
  nodegraph serve
  nodegraph serve --listen 0.0.0.0 --port 8188 --token s3cret --models ~/ComfyUI/models
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to the ``nodegraph`` parser's sub-parsers."""
    p = sub.add_parser("serve", help="serve ComfyUI's HTTP/websocket API (scripts and clients of "
                       "ComfyUI drive NodeGraph)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", nargs="?", const="0.0.0.0", default="127.0.0.1", metavar="ADDR",
                   help="address to listen on (default 127.0.0.1; --listen alone: 0.0.0.0, every "
                   "interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--token", metavar="TOKEN",
                   help=f"require this token on every request (default: ${ENV_TOKEN}, if set)")
    p.add_argument("--enable-cors-header", nargs="?", const="*", default=None, metavar="ORIGIN",
                   help="send CORS headers allowing ORIGIN (alone: '*'); off by default")
    p.add_argument("--input-dir", metavar="DIR", default="input",
                   help="folder of uploads and LoadImage's first input folder (default: input)")
    p.add_argument("--output-dir", metavar="DIR", default="output",
                   help="folder SaveImage writes to (default: output)")
    p.add_argument("--models", metavar="DIR", action="append", default=[],
                   help="extra models root, searched first (repeatable)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--dtype", choices=DTYPES, default="auto")
    p.add_argument("--max-upload-size", type=float, default=100.0, metavar="MB",
                   help="largest upload in megabytes (default 100)")
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    from .engine import Engine
    from .safety import is_loopback

    try:
        config = ServerConfig(host=args.listen, port=args.port, token=token_from_env(args.token),
                              cors_origin=args.enable_cors_header, input_dir=Path(args.input_dir),
                              max_upload_mb=args.max_upload_size)
    except ValueError as exc:
        print(f"nodegraph serve: {exc}", file=sys.stderr)
        return EXIT_INVALID
    options = RunOptions(device=args.device, dtype=args.dtype, output_dir=Path(args.output_dir),
                         models_dirs=tuple(Path(p) for p in args.models))
    engine = Engine(options, input_dir=config.input_dir)
    engine.share_input_dir()
    for line in pack_warnings(engine.registry):
        print(line, file=sys.stderr)
    if not is_loopback(config.host) and config.token is None:
        print(f"warning: listening on {config.host} without a token: anyone who can reach this "
              f"machine can run prompts and read outputs (set --token or {ENV_TOKEN})", file=sys.stderr)
    try:
        asyncio.run(_serve(engine, config))
    except OSError as exc:
        print(f"nodegraph serve: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_INVALID
    finally:
        engine.close()
    return EXIT_OK


def _report(event: Any) -> None:
    """One line per prompt on stdout, as ComfyUI prints ("got prompt", "Prompt executed in ...")."""
    from ..queue import ItemFinished, ItemQueued

    if isinstance(event, ItemQueued):
        print(f"got prompt {event.item.id} ({len(event.item.graph)} nodes)", flush=True)
    elif isinstance(event, ItemFinished):
        entry = event.entry
        where = ""
        if entry.error and entry.error.get("node_id"):
            where = f" at node {entry.error['node_id']} ({entry.error['node_type']})"
        print(f"prompt {entry.id}: {entry.status}{where} in {entry.duration:.2f} s", flush=True)


async def _serve(engine: Any, config: ServerConfig) -> None:
    from .app import Server

    engine.queue.subscribe(_report)
    server = Server(engine, config)
    await server.start()
    print(f"NodeGraph is serving ComfyUI's API on {server.url}"
          + (" (token required)" if config.token else ""), flush=True)
    print(f"input: {engine.input_dir}  output: {engine.output_dir}  (Ctrl-C stops)", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stopped.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises KeyboardInterrupt
            pass
    # The event loop answers clients while the queue's worker thread runs nodes: when both want the
    # GIL, the loop waits at most the switch interval (Python's default 5 ms; 1 ms keeps replies and
    # websocket messages prompt, and costs nothing while the loop is idle).
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        await stopped.wait()
    finally:
        print("stopping", file=sys.stderr, flush=True)
        await server.stop()
        sys.setswitchinterval(switch)
