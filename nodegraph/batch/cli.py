"""``nodegraph batch``: the command-line face of :func:`nodegraph.batch.run_batch`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..context import DEVICES, DTYPES
from ..errors import GraphLoadError, GraphValidationError, UsageError, WriteError
from ..exitcodes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK
from .coordinator import BatchAborted

EPILOG = """\
SPEC: 0:1000 (1000 values), 0:1000:7 (a step), a,b,c (a list), @file (one value a line).
Several --sweep options form a grid; the last one varies fastest.

outputs: DIR/{index:06d}-{key}-{node}-{batch_element}.png, DIR/results.jsonl (one line per
finished item), DIR/errors.jsonl (items that failed), DIR/manifest.json (what the batch is).

exit codes:
  0    every item is done
  1    some items failed (see DIR/errors.jsonl); the others are done
  2    invalid input: graph, sweep, a folder holding another batch, Ray missing
  130  interrupted: what finished is kept; run again with --resume

examples:
  nodegraph batch graph.json --out seeds --sweep KSampler.seed=0:100 --workers 2
  nodegraph batch graph.json --out grid --sweep "Positive.text=@prompts.txt" --sweep 3.cfg=5,7,9
  nodegraph batch graph.json --out big --sweep 3.seed=0:10000 --ray ray://head:10001
  nodegraph batch --out big --resume          # continue as started
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``batch`` sub-command to the ``nodegraph`` parser's sub-parsers."""
    p = sub.add_parser("batch", help="run seed/prompt/param sweeps of a graph (resumable; local "
                       "workers or Ray)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("graph", metavar="GRAPH", nargs="?",
                   help="graph .json or PNG (may be left out with --resume: the manifest has it)")
    p.add_argument("--out", metavar="DIR", required=True, help="batch folder")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="set a param for every item, as `nodegraph run --set` (repeatable)")
    p.add_argument("--sweep", dest="sweeps", action="append", default=[], metavar="NODE.PARAM=SPEC",
                   help="a param to sweep; NODE is a node id or a unique title (repeatable)")
    p.add_argument("--ray", metavar="ADDRESS",
                       help="run on the Ray cluster at ADDRESS (ray://host:10001, host:6379, auto)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes (local, default 1; 0: in this process) or Ray actors "
                   "(default: one per GPU, else one per node)")
    p.add_argument("--threads", type=int, metavar="T",
                   help="CPU threads per worker (default: cores / workers; with --ray, --worker-cpus)")
    p.add_argument("--worker-cpus", type=float, default=1, metavar="C",
                   help="CPUs each Ray actor reserves (default 1)")
    p.add_argument("--worker-gpus", type=float, metavar="G",
                   help="GPUs each Ray actor reserves (default 1 if the cluster has GPUs, else 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue the batch in DIR (refused if graph or sweeps changed)")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="text: a status line on stderr; json: one JSON event a line on stdout")
    p.add_argument("--models", metavar="DIR", action="append", default=[],
                   help="extra models root, searched first (on every worker's machine)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--dtype", choices=DTYPES, default="auto")
    return p


def cmd_batch(args: argparse.Namespace) -> int:
    from ..session import Session
    from ..context import RunOptions
    from . import run_batch
    from .progress import JsonProgress, TextProgress

    if args.workers is not None and (args.workers < 0 or (args.ray and args.workers < 1)):
        print("nodegraph batch: --workers must be at least 1 (0, without --ray: run the items in "
              "this process)", file=sys.stderr)
        return EXIT_INVALID
    session = Session(options=RunOptions(device=args.device, dtype=args.dtype,
                                         models_dirs=tuple(Path(p) for p in args.models)))
    show = JsonProgress(sys.stdout) if args.progress == "json" else TextProgress(sys.stderr)
    source = args.graph or args.out

    def fail(code: int, kind: str, lines: list[str]) -> int:
        """Say why on stderr and, with --progress json, as an ``error`` event too."""
        for line in lines:
            print(line, file=sys.stderr)
        if args.progress == "json":
            show({"event": "error", "kind": kind, "exit_code": code, "messages": lines})
        return code

    try:
        graph = None
        if args.graph is not None:
            graph = session.load(args.graph)
            for assignment in args.sets:
                session.set(graph, assignment)
        elif args.sets:
            raise UsageError("--set needs the GRAPH file (a resumed batch keeps its graph)")
        result = run_batch(graph, args.out, args.sweeps, workers=args.workers, ray=args.ray,
                           resume=args.resume, on_event=show, session=session, threads=args.threads,
                           worker_cpus=args.worker_cpus, worker_gpus=args.worker_gpus)
    except (GraphLoadError, GraphValidationError) as exc:
        return fail(EXIT_INVALID, "invalid_graph", [f"{source}: {problem}" for problem in exc.problems])
    except UsageError as exc:
        return fail(EXIT_INVALID, "invalid_request", [f"nodegraph batch: {exc}"])
    except WriteError as exc:
        return fail(EXIT_INVALID, "invalid_request", [f"nodegraph batch: --out: {exc}"])
    except BatchAborted as exc:
        return fail(EXIT_FAILED, "aborted", [f"nodegraph batch: {exc}"])
    except KeyboardInterrupt:
        return fail(EXIT_INTERRUPTED, "interrupted",
                    ["nodegraph batch: aborted; finished items are kept, run again with --resume"])
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.failed else EXIT_OK
