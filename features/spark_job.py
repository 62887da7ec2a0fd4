"""Spark adapter of the feature stage: fit a Spark ML pipeline on train, transform every split.

Outputs ``features/<split>/`` (Parquet: row_id, label, features) and ``features/transform/`` (the
fitted PipelineModel, loadable with ``PipelineModel.load`` to transform new data identically).
"""
from __future__ import annotations

import logging

from pyspark.ml import Pipeline
from pyspark.ml.feature import FeatureHasher, OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ctr_pipeline.schema import SPLIT_NAMES
from ctr_pipeline.stage import StageContext, StageResult

from .core import CATEGORICAL_BLOCK, NUMERIC_BLOCK, FeaturePlan, plan_features

log = logging.getLogger("ctr_pipeline.features")
WIDTH_KEY = "ctr_pipeline_width"


def build_pipeline(plan: FeaturePlan) -> Pipeline:
    """The unfitted Spark ML pipeline for ``plan``; its output column is ``features``."""
    if plan.passthrough:
        return Pipeline(stages=[])
    stages = []
    if plan.numeric:
        stages.append(VectorAssembler(inputCols=list(plan.numeric), outputCol=NUMERIC_BLOCK, handleInvalid="keep"))
    if plan.categorical and plan.encoding == "hash":
        stages.append(FeatureHasher(inputCols=list(plan.categorical), outputCol=CATEGORICAL_BLOCK,
                                    numFeatures=plan.hash_buckets))
    elif plan.categorical:
        indexed = [f"_{c}_idx" for c in plan.categorical]
        onehot = [f"_{c}_oh" for c in plan.categorical]
        stages.append(StringIndexer(inputCols=list(plan.categorical), outputCols=indexed, handleInvalid="keep",
                                    stringOrderType="frequencyDesc"))
        stages.append(OneHotEncoder(inputCols=indexed, outputCols=onehot, handleInvalid="keep", dropLast=False))
        stages.append(VectorAssembler(inputCols=onehot, outputCol=CATEGORICAL_BLOCK))
    stages.append(VectorAssembler(inputCols=plan.blocks(), outputCol="features"))
    return Pipeline(stages=stages)


def vector_width(df: DataFrame, column: str) -> int:
    """Width of a vector column from its ML metadata, or from the first row when there is none."""
    meta = df.schema[column].metadata
    if WIDTH_KEY in meta:
        return int(meta[WIDTH_KEY])
    if "ml_attr" in meta and "num_attrs" in meta["ml_attr"]:
        return int(meta["ml_attr"]["num_attrs"])
    first = df.select(column).first()
    return first[0].size if first else 0


def run(ctx: StageContext) -> StageResult:
    splits_dir = ctx.run.path_of("sample")
    names = [n for n in SPLIT_NAMES if (splits_dir / n).is_dir()]
    plan = plan_features(ctx.cfg)
    train = ctx.spark.read.parquet(str(splits_dir / "train"))
    log.info("features: fitting on train (%d numeric, %d categorical columns, %s encoding)",
             len(plan.numeric), len(plan.categorical), plan.encoding)
    model = build_pipeline(plan).fit(train)
    model.write().save(str(ctx.out / "transform"))
    rows, width = {}, None
    for name in names:
        df = ctx.spark.read.parquet(str(splits_dir / name))
        out = model.transform(df)
        width = vector_width(out, "features")
        # Spark ML attaches one attribute per vector slot (megabytes for hashed features) to the column:
        # replace it by the width alone, or every Parquet footer and task binary carries it.
        out = out.select("row_id", "label", F.col("features").alias("features", metadata={WIDTH_KEY: width}))
        path = str(ctx.out / name)
        out.write.parquet(path)
        rows[name] = ctx.spark.read.parquet(path).count()
        log.info("features: %s: %s rows", name, f"{rows[name]:,}")
    details = {"plan": {"numeric": list(plan.numeric), "categorical": list(plan.categorical),
                        "encoding": plan.encoding, "hash_buckets": plan.hash_buckets,
                        "passthrough": plan.passthrough}, "vector_width": width}
    return StageResult(rows=rows, details=details, summary=[f"features: vector width {width:,}"])
