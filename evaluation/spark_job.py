"""Spark adapter of the evaluation stage: score splits with the Spark model, compute MXE and AUC on
Spark (nothing is collected to the driver), write ``evaluation/metrics.json``."""
from __future__ import annotations

import json
import logging

from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

from ctr_pipeline.stage import StageContext, StageResult
from features.spark_io import read_features

from .core import EPS, check_two_classes

log = logging.getLogger("ctr_pipeline.evaluation")


def score_metrics(scored) -> dict:
    """MXE, AUC, row and positive counts of a DataFrame with ``label`` and probability ``p``."""
    p = F.least(F.greatest(F.col("p"), F.lit(EPS)), F.lit(1 - EPS))
    y = F.col("label").cast("double")
    agg = scored.agg(F.count(F.lit(1)).alias("rows"), F.sum(y).alias("positives"), F.avg("p").alias("mean_p"),
                     (-F.avg(y * F.log(p) + (1 - y) * F.log1p(-p))).alias("mxe")).first()
    return {"rows": int(agg["rows"]), "positives": int(agg["positives"] or 0), "mean_prediction": agg["mean_p"],
            "mxe": agg["mxe"]}


def area_under_roc(scored) -> float:
    """Exact ROC AUC (numBins=0: no down-sampling of the curve); ties are handled by Spark's curve."""
    evaluator = BinaryClassificationEvaluator(rawPredictionCol="p", labelCol="label",
                                              metricName="areaUnderROC", numBins=0)
    return evaluator.evaluate(scored.withColumn("label", F.col("label").cast("double")))


def run(ctx: StageContext) -> StageResult:
    from xgboost.spark import SparkXGBClassifierModel

    model = SparkXGBClassifierModel.load(str(ctx.run.path_of("train") / "spark_model"))
    feats = ctx.run.path_of("features")
    metrics, rows = {}, {}
    for split in ctx.cfg.evaluation.splits:
        df = read_features(ctx.spark, str(feats / split))
        scored = (model.transform(df).select("label", vector_to_array("probability")[1].alias("p"))
                  .persist())
        try:
            m = score_metrics(scored)
            check_two_classes(split, m["rows"], m["positives"])
            m["auc"] = area_under_roc(scored)
        finally:
            scored.unpersist()
        m["base_rate"] = m["positives"] / m["rows"]
        metrics[split] = m
        rows[split] = m["rows"]
        log.info("evaluate: %s: AUC %.4f, MXE %.5f on %s rows", split, m["auc"], m["mxe"], f"{m['rows']:,}")
    (ctx.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    summary = [f"{split}: AUC {m['auc']:.4f}  MXE (log loss) {m['mxe']:.5f}  rows {m['rows']:,}  "
               f"positives {m['positives']:,} ({m['base_rate']:.2%})" for split, m in metrics.items()]
    return StageResult(rows=rows, details={"metrics": metrics}, summary=summary)
