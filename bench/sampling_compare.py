"""ScalableSRS vs Spark's own sampling on the same Parquet input, in the same benchmark run.

    python -m bench.sampling_compare [--rows 1000000 4000000] [--fraction 0.1] [--repeats 3]

Methods, each writing its sample to Parquet: `df.sample(fraction)` (one pass, approximate size),
`orderBy(rand()).limit(k)` (exact, full sort), and ScalableSRS's Spark engine (exact: one pass writes
the candidates, the driver resolves the cuts from them). Every run is a fresh process (its own JVM, so
peak memory is its own), timed after a warm-up read of the input; the order of methods rotates between
repeats and the best time is reported (a run's time varies by a second or more on a shared machine).
Also reports obtained sizes, waitlist sizes and the peak memory (summed PSS) of each run's process tree (driver, JVM,
Python workers).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .harness import DATA, demo_file, write_result


def parquet_input(spark, rows: int) -> Path:
    """The demo rows parsed once into Parquet (data/bench/parsed_<rows>), with row_id."""
    from ctr_pipeline.config import build_config, flag_layer
    from ctr_pipeline.readers.spark import read_input

    out = DATA / f"parsed_{rows}"
    if not (out / "_SUCCESS").exists():
        cfg = build_config([flag_layer("--input", "input.path", str(demo_file(rows)))])
        with tempfile.TemporaryDirectory(prefix="bench-q-") as quarantine:
            report = read_input(spark, cfg, str(Path(quarantine) / "q"))
            report.good.write.mode("overwrite").parquet(str(out))
            report.release()
    return out


METHODS = ("df.sample", "orderBy.limit", "scalable_srs")


def run_method(spark, path: Path, method: str, fraction: float, seed: int) -> dict:
    """Time one method (after a warm-up read of the input); returns seconds, sizes and extras."""
    from pyspark.sql import functions as F

    from ctr_pipeline.schema import SamplingConfig
    from ctr_pipeline.spark import temporary_conf
    from sampling.spark_srs import draw

    df = spark.read.parquet(str(path))
    df.select(F.sum("row_id")).collect()                  # warm-up: JVM, Python workers, file cache
    n = df.count()
    k = int(fraction * n + 0.5)
    target = tempfile.mkdtemp(prefix="bench-sample-")
    shutil.rmtree(target)
    extra = {}
    t0 = time.perf_counter()
    if method == "df.sample":
        df.sample(fraction=fraction, seed=seed).write.parquet(target)
    elif method == "orderBy.limit":
        df.orderBy(F.rand(seed)).limit(k).write.parquet(target)
    else:
        cfg = SamplingConfig(seed=seed, train=k, validation=0, test=1)
        with temporary_conf(spark, "spark.sql.ansi.enabled", "false"):
            drawn = draw(spark, df, cfg, None, df.count(), Path(target))
        target = str(Path(target) / "train")
        extra = {"waitlist": list(drawn.waitlists.values())[0], "attempts": drawn.attempts}
    seconds = time.perf_counter() - t0
    obtained = spark.read.parquet(target).count()
    shutil.rmtree(Path(target).parent if method == "scalable_srs" else target, ignore_errors=True)
    return {"seconds": seconds, "requested": k, "obtained": obtained, **extra}


def child(args) -> int:
    """One method in this fresh process: prints its result as JSON on the last line."""
    from ctr_pipeline.schema import SparkConfig
    from ctr_pipeline.spark import get_session

    spark = get_session(SparkConfig(master="local[*]", driver_memory="6g", log_level="ERROR",
                                    conf={"spark.ui.enabled": "false"}))
    result = run_method(spark, parquet_input(spark, args.rows[0]), args.method, args.fraction, args.seed)
    spark.stop()
    print(json.dumps(result))
    return 0


def main(argv=None) -> int:
    from .harness import run_measured

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prepare-only", action="store_true", help="only build the Parquet inputs")
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)  # internal: one child run
    args = parser.parse_args(argv)
    if args.method:
        return child(args)
    if args.prepare_only:
        from ctr_pipeline.schema import SparkConfig
        from ctr_pipeline.spark import get_session

        spark = get_session(SparkConfig(master="local[*]", driver_memory="6g", log_level="ERROR"))
        for rows in args.rows:
            parquet_input(spark, rows)
        spark.stop()
        return 0
    results = []
    for rows in args.rows:
        print(f"{rows:,} rows, sample {args.fraction:.0%} ({args.repeats} runs each, fresh process per run):",
              flush=True)
        runs: dict = {m: [] for m in METHODS}
        for rep in range(args.repeats):
            for method in METHODS[rep % 3:] + METHODS[:rep % 3]:   # rotate the order between repeats
                cmd = [sys.executable, "-m", "bench.sampling_compare", "--rows", str(rows), "--method", method,
                       "--fraction", str(args.fraction), "--seed", str(args.seed)]
                out = run_measured(cmd, cwd=Path(__file__).resolve().parent.parent)
                if out["returncode"] != 0:
                    raise SystemExit(f"{method} failed:\n{out['stderr'][-3000:]}")
                result = json.loads(out["stdout"].strip().splitlines()[-1])
                result["peak_memory_bytes"] = out["peak_memory_bytes"]
                runs[method].append(result)
        summary = {}
        for method, rs in runs.items():
            best = min(rs, key=lambda r: r["seconds"])
            summary[method] = {**best, "all_seconds": [r["seconds"] for r in rs],
                               "peak_memory_bytes": max(r["peak_memory_bytes"] for r in rs)}
            print(f"  {method:<14} best {best['seconds']:6.1f}s of {[round(r['seconds'], 1) for r in rs]}  rows "
                  f"{best['obtained']:>9,} (asked {best['requested']:,})  peak mem "
                  f"{summary[method]['peak_memory_bytes'] / 2**30:5.2f} GiB"
                  + (f"  waitlist {best['waitlist']}" if "waitlist" in best else ""), flush=True)
        srs_s = summary["scalable_srs"]["seconds"]
        ratios = {"scalable_srs / df.sample": srs_s / summary["df.sample"]["seconds"],
                  "orderBy.limit / scalable_srs": summary["orderBy.limit"]["seconds"] / srs_s}
        print("  " + ", ".join(f"{k} = {v:.2f}x" for k, v in ratios.items()), flush=True)
        results.append({"rows": rows, "methods": summary, "ratios": ratios})
    out = write_result("sampling_compare", {"fraction": args.fraction, "results": results})
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
