"""Refresh vs continuation vs full retrain on a drifted window, and batch scoring throughput.

    python -m bench.refresh_compare [--rows 1000000] [--drift 0.3]

Day 1 (``--rows`` demo rows) trains the champion with ``ctr-pipeline run`` (defaults); it is registered
and promoted. Day 2 is the same number of rows from the drifted click model (``demo-data --day 2
--drift``). ``ctr-pipeline refresh`` with ``refresh.full_retrain=true`` builds all three challengers and
scores them on the same holdout of day 2: wall time and holdout MXE of each, from its decision record.

Scoring: ``ctr-pipeline score`` of the day-1 champion (v1) on all of day 2 (wall time of the whole command,
Spark start included) against the same work in one process: pandas reads the file, the pipeline's own
encoder builds the rows, ``Booster.predict`` on all threads; rows/s of each, and the largest difference
between their predictions. Results in bench/results/refresh_compare.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from .harness import ROOT, run_measured, write_result

CLI = [sys.executable, "-m", "ctr_pipeline.cli"]


def window(rows: int, day: int, drift: float) -> Path:
    from ctr_pipeline.demo_data import generate

    from .harness import DATA

    path = DATA / f"demo_{rows}_day{day}_drift{drift:g}.tsv.gz"
    if not path.exists():
        generate(rows, path, seed=7, day=day, drift=drift)
    return path


def checked(result: dict, what: str) -> dict:
    if result["returncode"] != 0:
        raise SystemExit(f"{what} failed:\n{result['stderr'][-3000:]}")
    return result


def single_process_scores(registry: Path, version: str, data: Path, threads: int) -> dict:
    """Read, encode and predict ``data`` in this process with a version's own transform and booster."""
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    from ctr_pipeline.registry.store import Registry
    from features.encode import encode
    from features.state import FittedTransform

    bundle = Registry.open(str(registry)).bundle(version)
    numeric, categorical = [f"I{i}" for i in range(1, 14)], [f"C{i}" for i in range(1, 27)]
    t0 = time.perf_counter()
    dtypes = {"label": np.int8, **{c: np.float64 for c in numeric}, **{c: object for c in categorical}}
    frame = pd.read_csv(data, sep="\t", header=None, names=["label", *numeric, *categorical], dtype=dtypes)
    t1 = time.perf_counter()
    csr = encode(FittedTransform.load(bundle.transform), frame).to_scipy()
    t2 = time.perf_counter()
    booster = bundle.load_booster()
    booster.set_param({"nthread": threads})
    p = booster.predict(xgb.DMatrix(csr, missing=0.0))
    t3 = time.perf_counter()
    return {"rows": len(frame), "seconds": t3 - t0, "read_seconds": t1 - t0, "encode_seconds": t2 - t1,
            "predict_seconds": t3 - t2, "p": p}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--drift", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd

    day1, day2 = window(args.rows, 1, args.drift), window(args.rows, 2, args.drift)
    with tempfile.TemporaryDirectory(prefix="ctr-bench-refresh-") as tmp:
        tmp = Path(tmp)
        run, registry = tmp / "day1", tmp / "registry"
        train = checked(run_measured([*CLI, "run", "--input", str(day1), "--out", str(run)], cwd=ROOT), "day 1 run")
        checked(run_measured([*CLI, "models", "register", str(run), "--registry", str(registry), "--promote",
                              "champion"], cwd=ROOT), "register")
        refresh = checked(run_measured([*CLI, "refresh", "--registry", str(registry), "--input", str(day2),
                                        "--set", "refresh.full_retrain=true"], cwd=ROOT), "refresh")
        [marker] = (registry / "refresh" / "windows").iterdir()
        record = json.loads(marker.read_text())
        scored = checked(run_measured([*CLI, "score", "--model", f"{registry}@v1", "--input", str(day2), "--out",
                                       str(tmp / "scores")], cwd=ROOT), "score")
        mine = pd.read_parquet(tmp / "scores" / "predictions").sort_values("row_id")
        peer = single_process_scores(registry, "v1", day2, args.threads)   # the day-1 champion, as scored above
    from ctr_pipeline.readers.core import LINE_BITS

    line_of = mine["row_id"].to_numpy() & ((1 << LINE_BITS) - 1)    # a row id holds file index and line number
    diff = float(np.abs(mine["p_ctr"].to_numpy() - peer["p"][line_of - 1]).max())
    candidates = {name: {"holdout_mxe": c["mxe"], "relative_mxe_improvement": c["relative_mxe_improvement"],
                         "interval": c["improvement"]["interval"], "calibration": c["calibration"],
                         "seconds": record["facts"].get(name, {}).get("seconds")}
                  for name, c in record["candidates"].items()}
    payload = {"rows": args.rows, "drift": args.drift,
               "day1_run_seconds": train["seconds"], "refresh_command_seconds": refresh["seconds"],
               "refresh_peak_memory_bytes": refresh["peak_memory_bytes"],
               "champion_holdout_mxe": record["champion"]["holdout"]["mxe"], "candidates": candidates,
               "decision": record["decision"],
               "scoring": {"pipeline_seconds": scored["seconds"], "pipeline_rows_per_s": args.rows / scored["seconds"],
                           "single_process_seconds": peer["seconds"],
                           "single_process_rows_per_s": peer["rows"] / peer["seconds"],
                           "single_process_steps": {k: peer[k] for k in ("read_seconds", "encode_seconds",
                                                                          "predict_seconds")},
                           "predict_only_rows_per_s": peer["rows"] / peer["predict_seconds"],
                           "max_prediction_difference": diff}}
    path = write_result("refresh_compare", payload)
    print(json.dumps(payload, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
