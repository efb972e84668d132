"""NodeGraph launcher.

    python main.py              open the editor (with the demo graph, or the file given)
    python main.py GRAPH.json   open the editor on a graph
    python main.py run ...      the command line: same as `nodegraph run ...`
    python main.py --help       the command line's help
"""
from __future__ import annotations

import sys

CLI_COMMANDS = {"run", "validate", "nodes", "plugins", "import-comfy", "export-comfy", "batch", "-h", "--help"}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in CLI_COMMANDS:
        from nodegraph.cli import main as cli_main

        return cli_main(args)
    try:
        from gui.app import main as gui_main
    except ImportError as exc:  # the editor is not there yet, or Qt cannot load
        print(f"The editor cannot start ({exc}).", file=sys.stderr)
        print("Use the command line instead: python main.py run GRAPH  (see python main.py --help)", file=sys.stderr)
        return 2
    return gui_main(args)


if __name__ == "__main__":
    sys.exit(main())
