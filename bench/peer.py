"""`ctr-pipeline run` against the single-process peer script on the same demo file, in one run.

    python -m bench.peer [--rows 1000000 10000000] [--set key=value ...] [--repeat 1]

For each size, both run in a fresh process (the pipeline with its JVM and Python workers): wall time of
the whole process, seconds per stage (the pipeline's from its manifest, the peer's from its own clock),
test AUC and MXE of both, and the peak summed PSS (proportional set size) of each process tree. The
ratio pipeline / peer is the yardstick of issue 12 (1.5x at 1M rows, 1.2x at 10M). Results: bench/results/peer.json.

``--untuned`` also runs the pipeline without its default tuning (no search, no early stopping: the
defaults before issue 15) in the same run, and prints what the tuning costs and what it buys.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from .harness import demo_file, run_measured, write_result

STAGES = ("sample", "features", "train", "evaluate")
UNTUNED = ["training.search_space={}", "training.early_stopping_rounds=null"]


def run_peer(data: Path, threads: int) -> dict:
    r = run_measured([sys.executable, "-m", "bench.peer_script", str(data), "--threads", str(threads)])
    if r["returncode"] != 0:
        return {"failed": r["stderr"][-2000:], "wall_seconds": r["seconds"],
                "peak_memory_bytes": r["peak_memory_bytes"]}
    out = json.loads(r["stdout"].strip().splitlines()[-1])
    return {"wall_seconds": r["seconds"], "peak_memory_bytes": r["peak_memory_bytes"], "stages": out["seconds"],
            "test_auc": out["test_auc"], "test_mxe": out["test_mxe"], "width": out["width"]}


def run_pipeline(data: Path, sets: list[str]) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-peer-run-"))
    cmd = [sys.executable, "-m", "ctr_pipeline.cli", "run", "--input", str(data), "--out", str(run_dir)]
    for s in sets:
        cmd += ["--set", s]
    try:
        r = run_measured(cmd)
        if r["returncode"] != 0:
            return {"failed": r["stderr"][-2000:], "wall_seconds": r["seconds"],
                    "peak_memory_bytes": r["peak_memory_bytes"]}
        manifest = json.loads((run_dir / "manifest.json").read_text())
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    test = manifest["stages"]["evaluate"]["details"]["metrics"]["test"]
    train = manifest["stages"]["train"]["details"]
    return {"wall_seconds": r["seconds"], "peak_memory_bytes": r["peak_memory_bytes"],
            "stages": {s: manifest["stages"][s]["seconds"] for s in STAGES},
            "test_auc": test["auc"], "test_mxe": test["mxe"], "log_lines": len(r["stderr"].splitlines()),
            "trees": train.get("trees"), "search": train.get("search")}


def report(rows: int, peer: dict, pipe: dict) -> None:
    print(f"\n{rows:,} rows")
    print(f"  {'':<10}{'pipeline':>10}{'peer':>10}{'ratio':>8}")
    for name in STAGES:
        a, b = pipe.get("stages", {}).get(name), peer.get("stages", {}).get(name)
        if a is not None and b is not None:
            print(f"  {name:<10}{a:>9.1f}s{b:>9.1f}s{a / b:>7.2f}x")
    a, b = pipe["wall_seconds"], peer["wall_seconds"]
    print(f"  {'wall':<10}{a:>9.1f}s{b:>9.1f}s{a / b:>7.2f}x")
    print(f"  {'peak PSS':<10}{pipe['peak_memory_bytes'] / 2**30:>7.2f}GiB{peer['peak_memory_bytes'] / 2**30:>7.2f}GiB")
    for who, r in (("pipeline", pipe), ("peer", peer)):
        if "failed" in r:
            print(f"  {who} FAILED: {r['failed'].strip().splitlines()[-1] if r['failed'].strip() else '?'}")
        else:
            print(f"  {who:<9} test AUC {r['test_auc']:.4f}  MXE {r['test_mxe']:.5f}")
    if "failed" not in pipe and "failed" not in peer:
        print(f"  MXE pipeline vs peer: {(pipe['test_mxe'] - peer['test_mxe']) / peer['test_mxe']:+.3%}")


def report_tuning(tuned: dict, untuned: dict) -> None:
    """The default tuning's extra cost (train stage, whole run) and its effect on test MXE and AUC."""
    if "failed" in tuned or "failed" in untuned:
        print("  tuning comparison: a run failed")
        return
    extra_train = tuned["stages"]["train"] - untuned["stages"]["train"]
    extra_wall = tuned["wall_seconds"] - untuned["wall_seconds"]
    print(f"  default tuning: train {untuned['stages']['train']:.1f}s -> {tuned['stages']['train']:.1f}s "
          f"({extra_train:+.1f}s), whole run {untuned['wall_seconds']:.1f}s -> {tuned['wall_seconds']:.1f}s "
          f"({extra_wall / untuned['wall_seconds']:+.0%}); test MXE {untuned['test_mxe']:.5f} -> "
          f"{tuned['test_mxe']:.5f} ({(untuned['test_mxe'] - tuned['test_mxe']) / untuned['test_mxe']:+.2%} "
          f"improvement), AUC {untuned['test_auc']:.4f} -> {tuned['test_auc']:.4f}")
    if tuned.get("search"):
        from training.search import search_line

        print(f"  {search_line(tuned['search'])}")


def main(argv=None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--set", action="append", default=[], help="config override passed to the pipeline")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of the peer's XGBoost")
    parser.add_argument("--untuned", action="store_true",
                        help="also run the pipeline without the default search and early stopping")
    args = parser.parse_args(argv)
    results = []
    for rows in args.rows:
        data = demo_file(rows)
        peer = run_peer(data, args.threads)
        pipe = run_pipeline(data, args.set)
        report(rows, peer, pipe)
        result = {"rows": rows, "peer": peer, "pipeline": pipe, "ratio": pipe["wall_seconds"] / peer["wall_seconds"]}
        if args.untuned:
            result["untuned"] = run_pipeline(data, [*args.set, *UNTUNED])
            report_tuning(pipe, result["untuned"])
        results.append(result)
    path = write_result("peer", {"settings": args.set, "results": results})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
