"""Whole pipeline on demo data (default 200k and 1M rows): rows/s per stage and peak memory.

    python -m bench.pipeline_throughput [--rows 200000 1000000] [--set training.n_estimators=100 ...]

Each size runs `ctr-pipeline run` in a fresh process (its own JVM); the manifest gives per-stage
seconds and rows; memory is the peak summed PSS of the process tree (driver, JVM, Python workers).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from .harness import demo_file, run_measured, write_result

STAGE_ROWS = {  # which row count a stage's throughput is measured against
    "sample": lambda m: m["stages"]["sample"]["details"]["input"]["rows_read"],
    "features": lambda m: sum(m["stages"]["features"]["rows"].values()),
    "train": lambda m: m["stages"]["train"]["rows"]["train"],
    "evaluate": lambda m: sum(m["stages"]["evaluate"]["rows"].values()),
}


def measure(rows: int, sets: list[str]) -> dict:
    data = demo_file(rows)
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-run-{rows}-"))
    cmd = [sys.executable, "-m", "ctr_pipeline.cli", "run", "--input", str(data), "--out", str(run_dir)]
    for s in sets:
        cmd += ["--set", s]
    result = run_measured(cmd)
    if result["returncode"] != 0:
        raise SystemExit(f"pipeline failed on {rows} rows:\n{result['stderr'][-4000:]}")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    metrics = manifest["stages"]["evaluate"]["details"]["metrics"]["test"]
    stages = {}
    for stage, count in STAGE_ROWS.items():
        seconds = manifest["stages"][stage]["seconds"]
        n = count(manifest)
        stages[stage] = {"seconds": seconds, "rows": n, "rows_per_second": n / seconds}
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"rows": rows, "wall_seconds": result["seconds"], "peak_memory_bytes": result["peak_memory_bytes"],
            "stages": stages, "test_auc": metrics["auc"], "test_mxe": metrics["mxe"],
            "trees": manifest["stages"]["train"]["details"]["trees"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--set", action="append", default=[], help="config override passed to the pipeline")
    args = parser.parse_args(argv)
    results = []
    for rows in args.rows:
        r = measure(rows, args.set)
        results.append(r)
        print(f"{rows:>10,} rows  wall {r['wall_seconds']:7.1f}s  peak mem {r['peak_memory_bytes'] / 2**30:5.2f} GiB  "
              f"test AUC {r['test_auc']:.4f}  MXE {r['test_mxe']:.5f}")
        for stage, s in r["stages"].items():
            print(f"    {stage:<9} {s['seconds']:7.1f}s  {s['rows']:>10,} rows  {s['rows_per_second']:>10,.0f} rows/s")
    path = write_result("pipeline_throughput", {"settings": args.set, "results": results})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
