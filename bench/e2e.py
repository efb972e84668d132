"""Text to image end to end on a random full-size SD1.5 checkpoint: where the time and memory go.

Runs examples/txt2img.json (256×256, 4 steps, euler, normal) through the API on the CPU:

- cold: a fresh process loads the checkpoint, encodes the prompts, samples, decodes and saves —
  wall time split into load / text encode / sample / decode, and the process's peak RSS;
- reseed: the same graph with only the seed changed, in the same process — loading and text
  encoding come from the cache (checked, and printed);

once with the automatic precision (``--dtype auto``) and once with ``--dtype fp32`` (the reference
mode), each in its own process, interleaved, ``--repeats`` times (medians). The checkpoint is
written once (fp16, ~2 GB) to /tmp/nodegraph-bench/. If the demo model and examples/demo.json
exist, their warm run time is measured too (``demo_warm_s``).

    flock /tmp/ng-heavy.lock .venv/bin/python bench/e2e.py [--repeats 3]

For scale (measured on this machine, not in this run): ComfyUI does this job in fp32 in about
12.5 s cold and 10.5 s after a seed change, peaking at 6.4 GB RSS.
The last line is JSON: load_s, encode_s, sample_s, decode_s, total_s, peak_rss_mb, reseed_total_s
(automatic dtype), fp32_total_s, fp32_peak_rss_mb, fp32_reseed_total_s, demo_warm_s (if measured),
and auto_dtype (what ``auto`` picked).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH_DIR = Path(tempfile.gettempdir()) / "nodegraph-bench"
CKPT_NAME = "sd15-random-fp16.safetensors"
CKPT = BENCH_DIR / "models" / "checkpoints" / CKPT_NAME
DEMO_CKPT = ROOT / "nodes" / "models" / "checkpoints" / "demo-shapes.safetensors"
DEMO_GRAPH = ROOT / "examples" / "demo.json"
SETTINGS = [f"4.ckpt_name={CKPT_NAME}", "5.width=256", "5.height=256", "5.batch_size=1", "3.steps=4",
            "3.sampler_name=euler", "3.scheduler=normal", "3.cfg=7.0", "3.seed=1"]
RESEEDS = 3


def write_checkpoint() -> None:
    """The random full-size SD1.5 checkpoint (fp16), written once."""
    if CKPT.is_file():
        return
    import torch

    from nodes.sd.testing import write_random_checkpoint

    CKPT.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_random_checkpoint(CKPT, "sd1", tiny=False, dtype=torch.float16)
    print(f"wrote {CKPT} ({CKPT.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s", flush=True)


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(dtype: str) -> dict:
    """One cold run and RESEEDS seed-only re-runs in this process; returns the figures."""
    import torch  # imported before timing: the first node should not pay for the import

    import nodes.sd.checkpoint  # noqa: F401
    import nodes.sd.ksampler  # noqa: F401
    from nodegraph import RunOptions, api
    from nodegraph.executor import OutputCache

    out = Path(tempfile.mkdtemp(prefix="nodegraph-bench-out-"))
    options = RunOptions("cpu", dtype, out, (CKPT.parents[1],))
    session = api.Session(options=options, cache=OutputCache())
    graph = session.load(ROOT / "examples" / "txt2img.json")
    for assignment in SETTINGS:
        session.set(graph, assignment)

    wall = time.perf_counter()
    result = session.run(graph)
    cold_wall = time.perf_counter() - wall
    loads = result.stats.model_loads
    sec = result.stats.seconds
    figures = {
        "dtype": result.ui["4"]["dtype"],
        "load_s": sec["4"], "encode_s": sec["6"] + sec["7"], "sample_s": sec["3"], "decode_s": sec["8"],
        "total_s": cold_wall, "threads": torch.get_num_threads(),
    }
    reseed = []
    for seed in range(2, 2 + RESEEDS):
        session.set(graph, f"3.seed={seed}")
        wall = time.perf_counter()
        stats = session.run(graph).stats
        reseed.append(time.perf_counter() - wall)
        loads += stats.model_loads
        skipped = all(n in stats.cached for n in ("4", "6", "7"))
        if not skipped:
            raise SystemExit(f"a seed change re-ran load or text encode: ran {stats.executed}")
        figures["reseed_sample_s"] = stats.seconds["3"]
        figures["reseed_decode_s"] = stats.seconds["8"]
    figures["reseed_skipped_load_and_encode"] = True
    figures["model_loads"] = loads  # 1: the reseeds loaded nothing
    figures["reseed_total_s"] = statistics.median(reseed)
    figures["peak_rss_mb"] = peak_rss_mb()
    return figures


def demo_child() -> dict:
    """The demo graph with its models loaded: median of three runs after a first (cold) run, each with
    every seed increased by one, so that sampling and everything after it runs again."""
    from nodegraph import RunOptions, api
    from nodegraph.executor import OutputCache

    out = Path(tempfile.mkdtemp(prefix="nodegraph-bench-demo-"))
    session = api.Session(options=RunOptions("cpu", "auto", out), cache=OutputCache())
    graph = session.load(DEMO_GRAPH)
    seeds = [(n, p) for n in graph.nodes.values() if (spec := session.registry.get(n.type)) is not None
             for p in spec.params if p.control_after_run is not None]
    session.run(graph)
    times = []
    for _ in range(3):
        for n, p in seeds:
            graph.set_param(n, p.name, n.params.get(p.name, p.default) + 1)
        wall = time.perf_counter()
        session.run(graph)
        times.append(time.perf_counter() - wall)
    return {"demo_warm_s": round(statistics.median(times), 3)}


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"child {args} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="cold processes per dtype (medians)")
    parser.add_argument("--child", choices=["auto", "fp32", "demo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "demo":
        print(json.dumps(demo_child()))
        return
    if args.child:
        print(json.dumps(child(args.child)))
        return

    write_checkpoint()
    runs: dict[str, list[dict]] = {"auto": [], "fp32": []}
    for i in range(args.repeats):
        for dtype in ("auto", "fp32"):  # interleaved, each a fresh process
            r = run_child("--child", dtype)
            runs[dtype].append(r)
            print(f"[{i + 1}/{args.repeats}] {dtype:4}: total {r['total_s']:.2f} s = load {r['load_s']:.2f} + "
                  f"encode {r['encode_s']:.2f} + sample {r['sample_s']:.2f} + decode {r['decode_s']:.2f} (+ rest); "
                  f"reseed {r['reseed_total_s']:.2f} s (load and text encode skipped: cached); "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB, checkpoint loads {r['model_loads']}", flush=True)
    auto, fp32 = runs["auto"], runs["fp32"]
    print(f"auto picked: {auto[0]['dtype']}")
    print(f"threads: {auto[0]['threads']}; reseed = sample {median_of(auto, 'reseed_sample_s')} s + decode "
          f"{median_of(auto, 'reseed_decode_s')} s (auto), sample {median_of(fp32, 'reseed_sample_s')} s + decode "
          f"{median_of(fp32, 'reseed_decode_s')} s (fp32)")
    figures = {
        "load_s": median_of(auto, "load_s"), "encode_s": median_of(auto, "encode_s"),
        "sample_s": median_of(auto, "sample_s"), "decode_s": median_of(auto, "decode_s"),
        "total_s": median_of(auto, "total_s"), "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in auto)),
        "reseed_total_s": median_of(auto, "reseed_total_s"),
        "fp32_load_s": median_of(fp32, "load_s"), "fp32_sample_s": median_of(fp32, "sample_s"),
        "fp32_total_s": median_of(fp32, "total_s"),
        "fp32_peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in fp32)),
        "fp32_reseed_total_s": median_of(fp32, "reseed_total_s"),
        "auto_dtype": auto[0]["dtype"],
    }
    if DEMO_CKPT.is_file() and DEMO_GRAPH.is_file():
        figures.update(run_child("--child", "demo"))
    else:
        print(f"demo_warm_s not measured: {DEMO_CKPT.name} or {DEMO_GRAPH.name} is missing")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
