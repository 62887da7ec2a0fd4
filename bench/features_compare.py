"""The feature stage vs pandas + scikit-learn on the same rows, and TalkingData AUC with richer features.

    python -m bench.features_compare [--rows 1000000] [--repeats 1] [--skip-talkingdata]

Part 1, throughput: the demo rows parsed once to Parquet (as the sample stage stores splits). Each run
is a fresh process (peak memory of its whole tree, as PSS: driver, JVM, Python workers) that reads the Parquet,
fits on all rows and transforms all rows to sparse vectors, then writes them:

* ``spark``: this stage's fit + transform on local[*], written as feature Parquet;
* ``sklearn``: pandas + a scikit-learn ColumnTransformer in one process (numeric columns passed through,
  OneHotEncoder with min_frequency = features.min_count and an infrequent/unseen category, as the
  vocabulary encoding does), CSR written with scipy's save_npz (compressed).

Two feature sets: ``default`` (raw numerics + vocabularies) and ``rich`` (plus count and target
encoding of a few columns; scikit-learn's TargetEncoder cross-fits with 5 folds as the stage does).

Part 2, quality: the whole pipeline on ../shared/data TalkingData with an out-of-time split (the last
day is the test set), default features vs count + target encoding; test AUC and MXE.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .harness import DATA, ROOT, run_measured, write_result

RICH = ["C3", "C4", "C12", "C16", "C21"]
METHODS = ("spark", "sklearn")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _spec(kind: str):
    from ctr_pipeline.config import Layer, build_config
    from features.spec import resolve_spec

    values = {"counts": RICH, "target_encoding": RICH} if kind == "rich" else {}
    return resolve_spec(build_config([Layer("bench", {"features": values})]))


def run_spark(path: Path, kind: str) -> dict:
    from ctr_pipeline.schema import SparkConfig
    from ctr_pipeline.spark import get_session
    from features import spark_job as fj

    spark = get_session(SparkConfig(master="local[*]", driver_memory="6g", log_level="ERROR",
                                    conf={"spark.ui.enabled": "false"}))
    spec = _spec(kind)
    out = Path(tempfile.mkdtemp(prefix="bench-feat-")) / "out"
    t0 = time.perf_counter()
    df = spark.read.parquet(str(path))
    t, _, _ = fj.fit(spark, df, spec)
    t1 = time.perf_counter()
    fj.write_features(fj.transform(spark, t, df, out_of_fold=True), t.width, str(out))
    t2 = time.perf_counter()
    rows = spark.read.parquet(str(out)).count()
    nnz = spark.read.parquet(str(out)).selectExpr("sum(size(features.indices))").first()[0]
    result = {"seconds": t2 - t0, "fit_seconds": t1 - t0, "transform_seconds": t2 - t1, "rows": rows,
              "width": t.width, "nnz": int(nnz), "output_bytes": dir_bytes(out)}
    shutil.rmtree(out.parent, ignore_errors=True)
    spark.stop()
    return result


def run_sklearn(path: Path, kind: str) -> dict:
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, TargetEncoder

    spec = _spec(kind)
    numeric = [c for c, _ in spec.numeric]
    categorical = [c for c, _ in spec.categorical]
    t0 = time.perf_counter()
    frame = pd.read_parquet(path, columns=["row_id", "label", *numeric, *categorical])
    parts = [("num", "passthrough", numeric),
             ("cat", OneHotEncoder(min_frequency=spec.min_count, handle_unknown="infrequent_if_exist",
                                   sparse_output=True, dtype=np.float64), categorical)]
    if kind == "rich":
        def counts(x):
            return np.column_stack([x[c].map(x[c].value_counts()).to_numpy(dtype=float) for c in x.columns])
        parts += [("count", FunctionTransformer(counts), list(spec.counts)),
                  ("ctr", TargetEncoder(target_type="binary", smooth=spec.smoothing, cv=spec.folds, random_state=0),
                   list(spec.target_encoding))]
    ct = ColumnTransformer(parts, sparse_threshold=1.0)
    x = ct.fit_transform(frame.fillna({c: "__missing__" for c in categorical}), frame["label"].to_numpy())
    t1 = time.perf_counter()
    x = sp.csr_matrix(x)
    out = Path(tempfile.mkdtemp(prefix="bench-sk-")) / "x.npz"
    sp.save_npz(out, x, compressed=True)
    t2 = time.perf_counter()
    result = {"seconds": t2 - t0, "fit_seconds": t1 - t0, "transform_seconds": t2 - t1, "rows": x.shape[0],
              "width": x.shape[1], "nnz": int(x.nnz), "output_bytes": out.stat().st_size}
    shutil.rmtree(out.parent, ignore_errors=True)
    return result


def child(args) -> int:
    path = DATA / f"parsed_{args.rows}"  # made by prepare()
    result = (run_spark if args.method == "spark" else run_sklearn)(path, args.kind)
    print(json.dumps(result))
    return 0


def prepare(rows: int) -> Path:
    from ctr_pipeline.schema import SparkConfig
    from ctr_pipeline.spark import get_session

    from .sampling_compare import parquet_input

    spark = get_session(SparkConfig(master="local[*]", driver_memory="6g", log_level="ERROR"))
    path = parquet_input(spark, rows)
    spark.stop()
    return path


def throughput(rows: int, repeats: int) -> list[dict]:
    prepare(rows)
    results = []
    for kind in ("default", "rich"):
        best: dict = {}
        for rep in range(repeats):
            for method in (METHODS if rep % 2 == 0 else METHODS[::-1]):
                cmd = [sys.executable, "-m", "bench.features_compare", "--rows", str(rows), "--method", method,
                       "--kind", kind]
                out = run_measured(cmd, cwd=ROOT)
                if out["returncode"] != 0:
                    raise SystemExit(f"{method} {kind} failed:\n{out['stderr'][-3000:]}")
                r = json.loads(out["stdout"].strip().splitlines()[-1])
                r["peak_memory_bytes"] = out["peak_memory_bytes"]
                if method not in best or r["seconds"] < best[method]["seconds"]:
                    best[method] = r
        for method, r in best.items():
            r["rows_per_second"] = r["rows"] / r["seconds"]
            r["bytes_per_row"] = r["output_bytes"] / r["rows"]
            print(f"  {kind:<8}{method:<8} {r['seconds']:6.1f}s (fit {r['fit_seconds']:.1f}s, transform+write "
                  f"{r['transform_seconds']:.1f}s)  {r['rows_per_second']:>9,.0f} rows/s  width {r['width']:,}  "
                  f"{r['bytes_per_row']:.1f} B/row  peak mem {r['peak_memory_bytes'] / 2**30:.2f} GiB", flush=True)
        ratio = best["sklearn"]["seconds"] / best["spark"]["seconds"]
        print(f"  {kind}: sklearn / spark wall = {ratio:.2f}x", flush=True)
        results.append({"rows": rows, "features": kind, "methods": best, "sklearn_over_spark": ratio})
    return results


def talkingdata() -> list[dict]:
    data = ROOT.parent / "shared" / "data" / "talkingdata_adtracking_train_sample_100k.csv.gz"
    if not data.exists():
        print(f"  TalkingData not found at {data}; skipped")
        return []
    variants = {"default": [], "counts+target": [
        "--set", "features.counts=[ip, app, device, os, channel]",
        "--set", "features.target_encoding=[ip, app, device, os, channel]"]}
    out = []
    for name, extra in variants.items():
        run_dir = Path(tempfile.mkdtemp(prefix="bench-td-")) / "run"
        cmd = [str(Path(sys.executable).parent / "ctr-pipeline"), "run", "--config", "configs/talkingdata.yaml",
               "--input", str(data), "--out", str(run_dir), "--set", "sampling.out_of_time=1d", *extra]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"TalkingData {name} failed:\n{proc.stderr[-3000:]}")
        metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
        manifest = json.loads((run_dir / "manifest.json").read_text())
        r = {"features": name, "test": metrics["test"], "validation": metrics.get("validation"),
             "vector_width": manifest["stages"]["features"]["details"]["vector_width"],
             "rows": manifest["stages"]["sample"]["rows"]}
        print(f"  TalkingData {name:<14} test AUC {r['test']['auc']:.4f}  MXE {r['test']['mxe']:.5f}  "
              f"({r['test']['positives']} positives in {r['test']['rows']:,})  width {r['vector_width']:,}", flush=True)
        out.append(r)
        shutil.rmtree(run_dir.parent, ignore_errors=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-talkingdata", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)  # internal: one child run
    parser.add_argument("--kind", choices=("default", "rich"), default="default", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.method:
        return child(args)
    payload: dict = {}
    if not args.skip_throughput:
        print(f"fit + transform of {args.rows:,} demo rows, fresh process per run:", flush=True)
        payload["throughput"] = throughput(args.rows, args.repeats)
    if not args.skip_talkingdata:
        print("TalkingData, out-of-time split (test = last day):", flush=True)
        payload["talkingdata"] = talkingdata()
    print(f"results: {write_result('features_compare', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
