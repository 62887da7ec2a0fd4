"""The training stage against single-process XGBoost and Spark MLlib GBT on the same feature vectors.

    python -m bench.training_compare [--rows 1000000] [--trees 100] [--gbt-trees N] [--skip-real]
        [--scaling 250000 1000000 4000000]

Part 1 (demo rows, sample + features made once by the CLI): in one run, each method in a fresh process
(wall of the fit, test AUC and MXE):
* ``stage-w1`` / ``stage-w2``: ``SparkXGBClassifier`` as the stage runs it, num_workers 1 and 2;
* ``native``: ``xgboost.train`` in one process on the same vectors read into a CSR matrix (all cores);
* ``native-hist`` / ``stage-w2-hist``: the same two with tree_method hist;
* ``mllib-gbt-dense`` vs ``stage-w2-dense`` (approx) and ``stage-w2-dense-hist``: MLlib ``GBTClassifier``
  (maxBins 32) and the stage with equal depth and trees on one narrow dense matrix of the same rows
  (13 numeric columns, a count and an out-of-fold target encoding per categorical column: 65 columns).
  MLlib bins every feature of every row into a dense array, so the ~93k-column one-hot matrix of part 1
  is out of its reach (20 trees ran for over 17 minutes unfinished).

Part 2 (../shared/data): TalkingData and the Criteo attribution sample through the whole pipeline with
the shipped configs, against ``xgboost.train`` on the same feature vectors and split with the same
parameters: test MXE and its relative difference (target within 1%).

Part 3 (``--scaling``): the stage's fit time at several demo sizes (the train split is 80% of the rows).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from .harness import DATA, ROOT, run_measured, write_result

PARAMS = {"max_depth": 6, "learning_rate": 0.1}


def ctr(*args: str) -> None:
    cmd = [str(Path(sys.executable).parent / "ctr-pipeline"), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")


CATEGORICAL = [f"C{i}" for i in range(1, 27)]
# A narrow dense matrix MLlib GBT can fit: the 13 numeric columns plus a count and an out-of-fold target
# encoding per categorical column (65 columns) instead of the ~93k-column one-hot vocabulary.
DENSE = ("features.categorical_encoding=none", f"features.counts=[{','.join(CATEGORICAL)}]",
         f"features.target_encoding=[{','.join(CATEGORICAL)}]")


def prepared_run(rows: int, dense: bool = False) -> Path:
    """sample + features of ``rows`` demo rows, made once (data/bench/train_run_<rows>[_dense])."""
    from .harness import demo_file

    run = DATA / f"train_run_{rows}{'_dense' if dense else ''}"
    manifest = run / "manifest.json"
    if not manifest.exists() or "features" not in json.loads(manifest.read_text()).get("stages", {}):
        ctr("sample", "--input", str(demo_file(rows)), "--out", str(run))
        sets = [a for s in (DENSE if dense else ()) for a in ("--set", s)]
        ctr("features", "--out", str(run), *sets)
    return run


def csr_from_parquet(path: Path):
    """(CSR matrix, labels, weights or None) of feature Parquet, in row_id order."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from scipy.sparse import csr_matrix

    table = pq.read_table(path)
    table = table.take(pc.sort_indices(table, [("row_id", "ascending")]))
    feats = table.column("features").combine_chunks()
    idx = feats.field("indices")
    vals = feats.field("values")
    width = int(pc.max(feats.field("size")).as_py())
    indptr = idx.offsets.to_numpy()
    x = csr_matrix((vals.values.to_numpy(), idx.values.to_numpy(), indptr - indptr[0]), shape=(len(table), width))
    y = table.column("label").to_numpy().astype(np.float64)
    w = table.column("weight").to_numpy() if "weight" in table.column_names else None
    return x, y, w


def native_params(trees: int, extra: dict) -> tuple[dict, int]:
    p = {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "approx",
         "max_depth": PARAMS["max_depth"], "eta": PARAMS["learning_rate"], **extra}
    return p, trees


def test_metrics(y, p) -> dict:
    from evaluation.core import ScoreTable, weighted_mxe

    return {"auc": ScoreTable.from_arrays(y, p).roc_auc(), "mxe": weighted_mxe(y, p)}


def child(args) -> int:
    run = Path(args.run)
    feats = run / "features"
    if args.method == "native":
        import xgboost as xgb

        x, y, w = csr_from_parquet(feats / "train")
        xt, yt, _ = csr_from_parquet(feats / "test")
        t0 = time.perf_counter()
        dtrain = xgb.DMatrix(x, label=y, weight=w, missing=0.0)
        params, rounds = native_params(args.trees, {"tree_method": args.tree_method})
        booster = xgb.train(params, dtrain, rounds)
        seconds = time.perf_counter() - t0
        result = {"seconds": seconds, **test_metrics(yt, booster.predict(xgb.DMatrix(xt, missing=0.0)))}
    else:
        from pyspark.ml.functions import vector_to_array
        from pyspark.sql import functions as F

        from ctr_pipeline.schema import SparkConfig
        from ctr_pipeline.spark import get_session
        from features.spark_io import read_features

        spark = get_session(SparkConfig(master="local[*]", driver_memory="6g", log_level="ERROR",
                                        conf={"spark.ui.enabled": "false"}))
        train = read_features(spark, str(feats / "train")).cache()
        train.count()
        test = read_features(spark, str(feats / "test"))
        t0 = time.perf_counter()
        if args.method == "mllib-gbt":
            from pyspark.ml.classification import GBTClassifier

            model = GBTClassifier(maxDepth=PARAMS["max_depth"], maxIter=args.trees, stepSize=PARAMS["learning_rate"],
                                  seed=1).fit(train.withColumn("label", F.col("label").cast("double")))
        else:
            from xgboost.spark import SparkXGBClassifier

            model = SparkXGBClassifier(features_col="features", label_col="label", enable_sparse_data_optim=True,
                                       missing=0.0, num_workers=args.workers, tree_method=args.tree_method,
                                       n_estimators=args.trees, eval_metric="logloss", **PARAMS).fit(train)
        seconds = time.perf_counter() - t0
        rows = model.transform(test).select("label", vector_to_array("probability")[1].alias("p")).toPandas()
        result = {"seconds": seconds, **test_metrics(rows["label"].to_numpy(), rows["p"].to_numpy())}
        spark.stop()
    print(json.dumps(result))
    return 0


def measure(run: Path, method: str, trees: int, workers: int = 1, tree_method: str = "approx") -> dict:
    cmd = [sys.executable, "-m", "bench.training_compare", "--method", method, "--run", str(run),
           "--trees", str(trees), "--workers", str(workers), "--tree-method", tree_method]
    out = run_measured(cmd, cwd=ROOT)
    if out["returncode"] != 0:
        raise SystemExit(f"{method} failed:\n{out['stderr'][-3000:]}")
    r = json.loads(out["stdout"].strip().splitlines()[-1])
    r["peak_memory_bytes"] = out["peak_memory_bytes"]
    return r


def real_data(name: str, config: str) -> dict:
    """The pipeline on a shipped config against xgboost.train on the same vectors and split."""
    import tempfile

    import xgboost as xgb

    from ctr_pipeline.config import build_config, load_file_layer
    from training.core import estimator_params

    run = Path(tempfile.mkdtemp(prefix=f"bench-{name}-")) / "run"
    ctr("run", "--config", config, "--out", str(run), "--set", "evaluation.baselines=[]",
        "--set", "evaluation.bootstrap=0")
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    meta = json.loads((run / "model" / "metadata.json").read_text())
    cfg = build_config([load_file_layer(ROOT / config)])
    est = estimator_params(cfg)
    extra = dict(cfg.training.params)
    params = {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": est["tree_method"],
              "max_depth": est["max_depth"], "eta": est["learning_rate"], **extra}
    x, y, w = csr_from_parquet(run / "features" / "train")
    xt, yt, _ = csr_from_parquet(run / "features" / "test")
    dtrain = xgb.DMatrix(x, label=y, weight=w, missing=0.0)
    kwargs = {}
    if cfg.training.early_stopping_rounds:
        xv, yv, _ = csr_from_parquet(run / "features" / "validation")
        kwargs = {"evals": [(xgb.DMatrix(xv, label=yv, missing=0.0), "validation")],
                  "early_stopping_rounds": cfg.training.early_stopping_rounds, "verbose_eval": False}
    booster = xgb.train(params, dtrain, cfg.training.n_estimators, **kwargs)
    best = getattr(booster, "best_iteration", None)
    rng = (0, best + 1) if best is not None and kwargs else (0, 0)
    native = test_metrics(yt, booster.predict(xgb.DMatrix(xt, missing=0.0), iteration_range=rng))
    pipe = {"mxe": metrics["test"]["mxe"], "auc": metrics["test"]["auc"], "trees": meta["trees"]}
    out = {"data": name, "pipeline": pipe, "native": {**native, "trees": booster.num_boosted_rounds(),
                                                      "best_iteration": best},
           "relative_mxe_difference": (pipe["mxe"] - native["mxe"]) / native["mxe"]}
    print(f"  {name:<22} pipeline test MXE {pipe['mxe']:.6f} AUC {pipe['auc']:.4f} ({pipe['trees']} trees)  "
          f"native MXE {native['mxe']:.6f} AUC {native['auc']:.4f}  difference "
          f"{out['relative_mxe_difference']:+.3%}", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--gbt-trees", type=int, help="trees for the MLlib GBT pair (default: --trees)")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-gbt", action="store_true", help="leave out the MLlib GBTClassifier pair")
    parser.add_argument("--scaling", type=int, nargs="*", default=[],
                        help="also time the stage at these row counts, e.g. 250000 1000000 4000000")
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--tree-method", default="approx", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.method:
        return child(args)
    payload: dict = {}
    if not args.skip_demo:
        run = prepared_run(args.rows)
        print(f"{args.rows:,} demo rows, {args.trees} trees of depth {PARAMS['max_depth']} (approx unless named "
              "hist), fresh process per method:", flush=True)
        gbt_trees = args.gbt_trees or args.trees
        plan = {"native": ("native", args.trees, 1, run, "approx"),
                "stage-w1": ("stage", args.trees, 1, run, "approx"),
                "stage-w2": ("stage", args.trees, 2, run, "approx"),
                "native-hist": ("native", args.trees, 1, run, "hist"),
                "stage-w2-hist": ("stage", args.trees, 2, run, "hist")}
        if not args.skip_gbt:
            dense = prepared_run(args.rows, dense=True)
            plan.update({"stage-w2-dense": ("stage", gbt_trees, 2, dense, "approx"),
                         "stage-w2-dense-hist": ("stage", gbt_trees, 2, dense, "hist"),
                         "mllib-gbt-dense": ("mllib-gbt", gbt_trees, 1, dense, "-")})
        res = {}
        for k, (method, trees, workers, where, tree_method) in plan.items():
            r = res[k] = measure(where, method, trees, workers, tree_method)
            print(f"  {k:<20} {trees:>4} trees  fit {r['seconds']:7.1f}s  test AUC {r['auc']:.4f}  MXE "
                  f"{r['mxe']:.5f}  peak mem {r['peak_memory_bytes'] / 2**30:.2f} GiB", flush=True)
        ratios = {f"stage-w{k} / native wall": res[f"stage-w{k}"]["seconds"] / res["native"]["seconds"]
                  for k in (1, 2)}
        ratios.update({f"stage-w{k} - native AUC": res[f"stage-w{k}"]["auc"] - res["native"]["auc"] for k in (1, 2)})
        ratios["stage-w2-hist / native-hist wall"] = res["stage-w2-hist"]["seconds"] / res["native-hist"]["seconds"]
        ratios["stage-w2-hist - native-hist AUC"] = res["stage-w2-hist"]["auc"] - res["native-hist"]["auc"]
        for k in ("stage-w2-dense", "stage-w2-dense-hist"):
            if k in res:
                ratios[f"mllib-gbt / {k} wall"] = res["mllib-gbt-dense"]["seconds"] / res[k]["seconds"]
                ratios[f"{k} - mllib-gbt MXE"] = res[k]["mxe"] - res["mllib-gbt-dense"]["mxe"]
        print("  " + ", ".join(f"{k} = {v:.3f}" for k, v in ratios.items()), flush=True)
        payload["demo"] = {"rows": args.rows, "trees": args.trees, "gbt_trees": gbt_trees, "methods": res,
                           "ratios": ratios}
    if not args.skip_real:
        print("real data, the shipped configs, pipeline vs xgboost.train on the same vectors and split:", flush=True)
        payload["real"] = [real_data("TalkingData", "configs/talkingdata.yaml"),
                           real_data("Criteo attribution", "configs/criteo_attribution.yaml")]
    if args.scaling:
        print(f"scaling, stage with num_workers 2, {args.trees} trees:", flush=True)
        points = []
        for rows in args.scaling:
            r = measure(prepared_run(rows), "stage", args.trees, 2)
            r["rows"] = rows
            r["train_rows_per_second"] = 0.8 * rows / r["seconds"]
            points.append(r)
            print(f"  {rows:>10,} rows  fit {r['seconds']:7.1f}s  {r['train_rows_per_second']:,.0f} train rows/s  "
                  f"test AUC {r['auc']:.4f}  peak mem {r['peak_memory_bytes'] / 2**30:.2f} GiB", flush=True)
        payload["scaling"] = points
    print(f"results: {write_result('training_compare', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
