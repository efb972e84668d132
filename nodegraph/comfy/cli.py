"""``nodegraph import-comfy`` and ``nodegraph export-comfy``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import GraphLoadError, UsageError, WriteError
from ..exitcodes import EXIT_INVALID, EXIT_OK
from ..fileio import write_text_atomic
from ..format import escape_lone_surrogates

IMPORT_EPILOG = """\
FILE: a ComfyUI workflow (.json, UI format 0.4 or 1), an API prompt (.json), or a PNG/WebP that
ComfyUI saved (its 'workflow' or 'prompt' metadata). Node types NodeGraph does not have become
placeholder nodes that keep their data; the command lists them. See docs/comfyui.md.

examples:
  nodegraph import-comfy workflow.json -o graph.json
  nodegraph import-comfy ComfyUI_00001_.png -o graph.json
"""

EXPORT_EPILOG = """\
Writes ComfyUI's API format (what its /prompt endpoint takes). Nodes ComfyUI has no equivalent
for (other packs' nodes, placeholders) are an error; notes and muted nodes are left out.

examples:
  nodegraph export-comfy graph.json -o api.json
"""


def add_parsers(sub: Any) -> None:
    """Add the ``import-comfy`` and ``export-comfy`` sub-commands to the ``nodegraph`` parser."""
    imp = sub.add_parser("import-comfy", help="convert a ComfyUI workflow, API prompt or PNG to a "
                         "graph file", epilog=IMPORT_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("-o", "--output", metavar="GRAPH.json", required=True)
    exp = sub.add_parser("export-comfy", help="write a graph in ComfyUI's API format",
                         epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    exp.add_argument("graph", metavar="GRAPH", help="graph file (or anything import-comfy reads)")
    exp.add_argument("-o", "--output", metavar="API.json", required=True)


def cmd_import(args: argparse.Namespace) -> int:
    from .. import format as graph_format
    from ..session import Session

    session = Session()
    try:
        opened = session.open_graph(args.file)
    except GraphLoadError as exc:
        _problems(args.file, exc.problems)
        return EXIT_INVALID
    if opened.report is not None:
        for line in opened.report.lines():
            print(f"{args.file}: {line}", file=sys.stderr)
    try:
        graph_format.save(opened.graph, args.output)
    except WriteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    unknown = sum(opened.report.unknown.values()) if opened.report else 0
    print(f"wrote {args.output}: {len(opened.graph)} node(s), {len(opened.graph.links)} link(s)"
          + (f", {unknown} placeholder(s)" if unknown else ""))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from ..session import Session
    from .export import export_prompt

    session = Session()
    try:
        graph = session.load(args.graph)
    except GraphLoadError as exc:
        _problems(args.graph, exc.problems)
        return EXIT_INVALID
    try:
        prompt = export_prompt(graph, session.registry.nodes)
    except UsageError as exc:
        print(f"{args.graph}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    out = Path(args.output)
    try:
        write_text_atomic(out, escape_lone_surrogates(json.dumps(prompt, indent=2, ensure_ascii=False)) + "\n",
                          parents=True)
    except WriteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {args.output}: {len(prompt)} node(s)")
    return EXIT_OK


def _problems(source: str, problems: list[Any]) -> None:
    for p in problems:
        print(f"{source}: {p}", file=sys.stderr)


COMMANDS = {"import-comfy": cmd_import, "export-comfy": cmd_export}
