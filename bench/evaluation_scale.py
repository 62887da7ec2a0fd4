"""Evaluation metrics on a large scored set: time on Spark, and the AUC error of the rounded-score path.

    python -m bench.evaluation_scale [--rows 4000000] [--replicates 200]

A synthetic scored set (continuous probabilities, 4% positives, row weights 1) is generated on Spark.
AUC is computed twice: exactly (every distinct score, collected as a per-score table) and through the
rounded path used above ``evaluation.exact_auc_limit`` (scores rounded to 7 decimals); the difference
and the reported bound are printed with the time of each, and the time of a paired bootstrap.
"""
from __future__ import annotations

import argparse
import sys
import time

from .harness import write_result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--replicates", type=int, default=200)
    args = parser.parse_args(argv)

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from ctr_pipeline.schema import SparkConfig
    from ctr_pipeline.spark import get_session
    from evaluation import spark_metrics as sm

    spark = get_session(SparkConfig(master="local[*]", driver_memory="6g", log_level="ERROR",
                                    conf={"spark.ui.enabled": "false"}))
    x = F.randn(seed=3)
    score = 1 / (1 + F.exp(-(x - 3.5)))
    df = (spark.range(args.rows).select(F.col("id").alias("row_id"), score.alias("p_a"),
                                        (1 / (1 + F.exp(-(0.6 * x + 0.4 * F.randn(seed=5) - 3.5)))).alias("p_b"))
          .withColumn("label", (F.rand(seed=7) < F.col("p_a")).cast("int")).withColumn("w", F.lit(1.0))
          .persist(StorageLevel.MEMORY_AND_DISK))
    df.count()
    out = {"rows": args.rows}
    for name, limit in (("exact", args.rows * 2), ("rounded", 1000)):
        t0 = time.perf_counter()
        m, _ = sm.metrics(df, "p_a", "synthetic", bins=10, exact_limit=limit)
        out[name] = {"seconds": time.perf_counter() - t0, "auc": m["auc"], "bound": m["auc_error_bound"],
                     "exact": m["auc_exact"], "mxe": m["mxe"], "pr_auc": m["pr_auc"]}
        print(f"  {name:<8} AUC {m['auc']:.8f} (bound {m['auc_error_bound']:.2e})  MXE {m['mxe']:.6f}  "
              f"{out[name]['seconds']:.1f}s", flush=True)
    out["auc_error"] = abs(out["exact"]["auc"] - out["rounded"]["auc"])
    print(f"  rounded-score AUC error {out['auc_error']:.2e} (reported bound {out['rounded']['bound']:.2e})")
    t0 = time.perf_counter()
    boot = sm.bootstrap(df, "p_a", "p_b", args.replicates, seed=1)
    out["bootstrap"] = {"seconds": time.perf_counter() - t0, "replicates": args.replicates, **boot}
    print(f"  paired bootstrap, {args.replicates} replicates: {out['bootstrap']['seconds']:.1f}s; AUC difference "
          f"95% interval {boot['auc_difference']['interval']}")
    spark.stop()
    print(f"results: {write_result('evaluation_scale', out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
