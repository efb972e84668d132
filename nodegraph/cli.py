"""The ``nodegraph`` command: run, validate, nodes, plugins, batch, import-comfy, export-comfy, serve."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .session import Session
from .comfy.cli import COMMANDS as COMFY_COMMANDS
from .comfy.cli import add_parsers as add_comfy_parsers
from .context import DEVICES, DTYPES, RunOptions
from .errors import (GraphLoadError, GraphValidationError, Interrupted, NodeExecutionError,
                     UsageError)
from .events import (Event, NodeCached, NodeFailed, NodeFinished, NodeStarted, Progress,
                     RunStarted)
from .exitcodes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK
from .plugins import pack_warnings
from .validate import errors, validate

ENV_DEBUG = "NODEGRAPH_DEBUG"

EPILOG = """\
exit codes:
  0    success
  1    a node failed while running (its id and type are printed)
  2    invalid input: unreadable graph file, validation errors, bad arguments
  130  interrupted (Ctrl-C)

examples:
  nodegraph run examples/hello.json --out output
  nodegraph run out.png --set 3.seed=42 --set "Positive.text=a red fox"
  nodegraph validate examples/*.json
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodegraph", description="Run and inspect NodeGraph graphs without the editor.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a graph file, a ComfyUI workflow/prompt, or a PNG/WebP "
                         "carrying one",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("graph", metavar="GRAPH", help="graph .json file, ComfyUI workflow or API .json, "
                     "or a PNG/WebP with an embedded graph (ComfyUI's too)")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=VALUE",
                     help="override a param; NODE is a node id or a unique title (repeatable)")
    run.add_argument("--out", metavar="DIR", default="output", help="output folder (default: output)")
    run.add_argument("--models", metavar="DIR", action="append", default=[],
                     help="extra models root, searched first (repeatable)")
    run.add_argument("--device", choices=DEVICES, default="auto")
    run.add_argument("--dtype", choices=DTYPES, default="auto")
    run.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    run.add_argument("--verbose", "-v", action="store_true",
                     help=f"print the traceback of every node failure, not only of unexpected ones "
                          f"(also {ENV_DEBUG}=1)")

    val = sub.add_parser("validate", help="check graph files; one line per problem",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    val.add_argument("graphs", metavar="GRAPH", nargs="+")
    val.add_argument("--models", metavar="DIR", action="append", default=[])

    nodes = sub.add_parser("nodes", help="list node types")
    nodes.add_argument("--json", action="store_true", help="print every spec as JSON")

    plugins = sub.add_parser("plugins", help="list node packs, with errors of those that failed")
    plugins.add_argument("--json", action="store_true")

    from .batch.cli import add_parser as add_batch_parser

    add_batch_parser(sub)
    add_comfy_parsers(sub)
    from .server.cli import add_parser as add_serve_parser

    add_serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INVALID
    try:
        return int(COMMANDS[args.command](args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# --------------------------------------------------------------------------------------------
def _session(args: argparse.Namespace) -> Session:
    options = RunOptions(device=getattr(args, "device", "auto"), dtype=getattr(args, "dtype", "auto"),
                         output_dir=Path(getattr(args, "out", "output")),
                         models_dirs=tuple(Path(p) for p in getattr(args, "models", [])))
    session = Session(options=options)
    for line in pack_warnings(session.registry):
        print(line, file=sys.stderr)
    return session


def cmd_run(args: argparse.Namespace) -> int:
    session = _session(args)
    try:
        graph = session.load(args.graph)
    except GraphLoadError as exc:
        _print_problems(args.graph, exc.problems)
        return EXIT_INVALID
    try:
        for assignment in args.sets:
            session.set(graph, assignment)
    except UsageError as exc:
        print(f"{args.graph}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    problems = validate(graph, session.registry, session.options)
    bad = errors(problems)
    _print_problems(args.graph, [p for p in problems if p.severity != "error"] if not args.quiet else [])
    if bad:
        _print_problems(args.graph, bad)
        return EXIT_INVALID

    show = _RunDisplay(graph, quiet=args.quiet, stream=sys.stderr)
    restore = _install_sigint(session)
    try:
        result = session.run(graph, on_event=show, validate=False)
    except NodeExecutionError as exc:
        show.close()
        print(f"{args.graph}: {exc}", file=sys.stderr)
        if exc.traceback_text and _wants_traceback(exc, args):
            print(exc.traceback_text.rstrip(), file=sys.stderr)
        return EXIT_FAILED
    except GraphValidationError as exc:
        show.close()
        _print_problems(args.graph, exc.problems)
        return EXIT_INVALID
    except Interrupted:
        show.close()
        print(f"{args.graph}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        restore()
    show.close()
    if not args.quiet:
        stats = result.stats
        print(f"done: {stats.summary()}")
        slow = sorted(stats.seconds.items(), key=lambda kv: -kv[1])[:5]
        if slow:
            print("slowest: " + ", ".join(f"{graph.nodes[n].label} {s:.2f} s" for n, s in slow))
        # Model loaders say which precision `--dtype` resolved to (auto picks per device).
        for node_id, ui in sorted(result.ui.items()):
            if ui.get("dtype"):
                print(f"precision ({graph.nodes[node_id].label}): {ui['dtype']}")
    for node_id, ui in sorted(result.ui.items()):
        for path in ui.get("files", []):
            print(f"wrote {path}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    session = _session(args)
    failed = False
    for path in args.graphs:
        try:
            graph = session.load(path)
        except GraphLoadError as exc:
            _print_problems(path, exc.problems)
            failed = True
            continue
        problems = session.validate(graph)
        _print_problems(path, problems)
        failed = failed or bool(errors(problems))
        if not problems:
            print(f"{path}: ok")
    return EXIT_INVALID if failed else EXIT_OK


def cmd_nodes(args: argparse.Namespace) -> int:
    registry = _session(args).registry
    if args.json:
        print(json.dumps(registry.to_json(), indent=2, sort_keys=True, default=str))
        return EXIT_OK
    specs = sorted(registry.nodes.values(), key=lambda s: (s.category, s.type_id))
    width = max((len(s.type_id) for s in specs), default=10)
    for spec in specs:
        flags = " [output]" if spec.output_node else ""
        print(f"{spec.type_id:<{width}}  {spec.category or '-':<14} {spec.pack or 'builtin'}{flags}")
    print(f"{len(specs)} node type(s)")
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = _session(args).registry
    if args.json:
        print(json.dumps([p.to_json() for p in registry.packs], indent=2))
        return EXIT_OK
    for pack in registry.packs:
        print(f"{pack.name}  {pack.status}  {pack.kind}: {pack.source}  "
              f"({len(pack.node_types)} node type(s))")
        if pack.status in ("failed", "skipped"):
            print(f"  error: {pack.error}")
            for line in pack.traceback.rstrip().splitlines():
                print(f"    {line}")
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch.cli import cmd_batch as run

    return run(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from .server.cli import cmd_serve as serve

    return serve(args)


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "nodes": cmd_nodes, "plugins": cmd_plugins,
            "batch": cmd_batch, "serve": cmd_serve}
COMMANDS.update(COMFY_COMMANDS)


# --------------------------------------------------------------------------------------------
def _wants_traceback(exc: NodeExecutionError, args: argparse.Namespace) -> bool:
    """A bug's traceback is shown (unless --quiet); an error a node raised on purpose says it all in
    its message, so its traceback is only shown when asked for (--verbose or NODEGRAPH_DEBUG=1)."""
    if args.verbose or os.environ.get(ENV_DEBUG, "") not in ("", "0"):
        return True
    return not exc.expected and not args.quiet


def _print_problems(source: str, problems: Sequence[Any], stream: TextIO | None = None) -> None:
    for p in problems:
        print(f"{source}: {p}", file=stream or sys.stderr)


def _install_sigint(session: Session) -> Any:
    """First Ctrl-C asks the run to stop cooperatively; a second one aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    presses = [0]

    def handler(signum: int, frame: Any) -> None:
        presses[0] += 1
        if presses[0] > 1:
            raise KeyboardInterrupt
        print("\nstopping after the current step (Ctrl-C again to abort)", file=sys.stderr)
        session.interrupt()

    previous = signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)


class _RunDisplay:
    """Event callback for the CLI: tqdm bars (nodes, steps) on a terminal, plain lines otherwise."""

    def __init__(self, graph: Any, quiet: bool, stream: TextIO):
        self.graph = graph
        self.quiet = quiet
        self.stream = stream
        self.tty = stream.isatty()
        self.nodes_bar: Any = None
        self.step_bar: Any = None

    def _label(self, node_id: str) -> str:
        node = self.graph.nodes.get(node_id)
        return node.label if node is not None else node_id

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        if self.tty:
            self._bars(event)
        elif isinstance(event, NodeFinished):
            print(f"node {self._label(event.node_id)} done in {event.seconds:.2f} s", file=self.stream)
        elif isinstance(event, NodeCached):
            print(f"node {self._label(event.node_id)} cached", file=self.stream)
        elif isinstance(event, NodeFailed):
            print(f"node {self._label(event.node_id)} failed", file=self.stream)

    def _bars(self, event: Event) -> None:
        from tqdm import tqdm

        if isinstance(event, RunStarted):
            self.nodes_bar = tqdm(total=len(event.node_ids), desc="nodes", unit="node",
                                  file=self.stream, position=0, leave=False)
        elif isinstance(event, NodeStarted) and self.nodes_bar is not None:
            self.nodes_bar.set_postfix_str(self._label(event.node_id))
        elif isinstance(event, Progress):
            if self.step_bar is None or self.step_bar.total != event.total:
                self._close_step()
                self.step_bar = tqdm(total=event.total, desc=self._label(event.node_id),
                                     unit="step", file=self.stream, position=1, leave=False,
                                     mininterval=0)  # steps are slow: show every one
            self.step_bar.update(event.step - self.step_bar.n)
        elif isinstance(event, (NodeFinished, NodeCached, NodeFailed)):
            self._close_step()
            if self.nodes_bar is not None:
                self.nodes_bar.update(1)

    def _close_step(self) -> None:
        if self.step_bar is not None:
            self.step_bar.close()
            self.step_bar = None

    def close(self) -> None:
        self._close_step()
        if self.nodes_bar is not None:
            self.nodes_bar.close()
            self.nodes_bar = None


if __name__ == "__main__":
    sys.exit(main())
