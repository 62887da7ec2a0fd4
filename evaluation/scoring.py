"""Batch scoring on Spark: raw logs -> the model's own fitted transform -> its booster (and, for a
gbdt_lr model, its logistic regression over the booster's leaves) -> Parquet.

``OUT/predictions/`` holds ``row_id``, ``label``, ``p_ctr`` and, for a model trained on
negative-downsampled data, ``p_ctr_recalibrated`` (p' = p / (p + (1 - p) / w)); ``OUT/report.json``
says what was read, quarantined and scored, the mean prediction, the metrics when labels are present,
and per vocabulary column the share of values the model never saw in train (the drift signal);
``OUT/quarantine/`` holds the malformed rows, as the sample stage writes them.

Rows are encoded and predicted in one pass of Arrow batches (the encoder is the features stage's own,
the prediction ``Booster.inplace_predict`` of the booster narrowed to the columns its trees split on
(:mod:`ctr_pipeline.narrow`), one thread per task), so nothing but the
predictions is written. ``report.json`` is written last: an output without it is unfinished.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ctr_pipeline.errors import InputDataError, UserError
from ctr_pipeline.readers.spark import read_input
from ctr_pipeline.registry.bundle import ModelBundle
from ctr_pipeline.runs import LOGS
from ctr_pipeline.schema import Config
from ctr_pipeline.stage import json_default
from ctr_pipeline.storage import Location

from . import spark_metrics as sm
from .boosters import digest, narrowed
from .spark_job import negative_rate

log = logging.getLogger("ctr_pipeline.scoring")
REPORT = "report.json"


def predictions(spark: SparkSession, bundle: ModelBundle, t: Any, rows: DataFrame, w: Optional[float]) -> DataFrame:
    """row_id, label, p_ctr[, p_ctr_recalibrated] of raw typed rows (the reader's columns), encoded with
    ``t`` (the bundle's fitted transform)."""
    import pyarrow as pa

    from features.encode import encode
    from features.spark_job import check_columns

    check_columns(rows.columns, t.spec, "the input to score")
    raw = bundle.booster.read_bytes()
    key = digest(raw)
    linear_raw = bundle.linear.read_bytes() if bundle.linear is not None else None
    shared = spark.sparkContext.broadcast((t, raw, linear_raw))
    threads = int(spark.conf.get("spark.task.cpus", "1"))
    fields = [("row_id", pa.int64()), ("label", pa.int32()), ("p_ctr", pa.float64())]
    if w is not None:
        fields.append(("p_ctr_recalibrated", pa.float64()))
    schema = pa.schema(fields)

    def score(batches):
        import numpy as np

        from .gbdt_lr import from_bytes

        fitted, model_bytes, linear_bytes = shared.value
        booster = narrowed(key, model_bytes, threads)
        hybrid = from_bytes(model_bytes, linear_bytes) if linear_bytes is not None else None
        for b in batches:
            if b.num_rows == 0:
                continue
            csr = encode(fitted, b.to_pandas()).to_scipy()
            p = np.asarray(hybrid.predict(csr) if hybrid is not None else
                           booster.predict(csr), dtype=np.float64)
            arrays = [b.column("row_id"), b.column("label"), pa.array(p)]
            if w is not None:
                arrays.append(pa.array(p / (p + (1.0 - p) / w)))
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    ddl = ", ".join(f"{name} {'bigint' if name == 'row_id' else 'int' if name == 'label' else 'double'}"
                    for name, _ in fields)
    cols = list(dict.fromkeys(["row_id", "label", *t.spec.input_columns()]))
    return rows.select(*cols).withColumn("label", F.col("label").cast("int")).mapInArrow(score, ddl)


def predict_csr(boosters: list, linear: list, csr, kind: str = "value") -> list:
    """Float64 predictions of each booster (:func:`.boosters.narrowed`; ``kind`` value or margin), then of each
    linear model, on the CSR rows ``csr``: what the Spark scorer and the evaluate stage's driver path compute."""
    import numpy as np

    return ([np.asarray(b.predict(csr, predict_type=kind), dtype=np.float64) for b in boosters]
            + [np.asarray(m.predict(csr), dtype=np.float64) for m in linear])


def predict_features(spark: SparkSession, boosters: dict[str, bytes], features: DataFrame, width: int,
                     weight_col: Optional[str] = None, margin: bool = False, linear: Optional[dict] = None,
                     carry: tuple[str, ...] = ()) -> DataFrame:
    """row_id, label, w, the double columns ``carry``, then p_<name> per booster and per linear model
    (:class:`evaluation.logistic.LinearModel`) of stored feature rows (``features`` a struct column as
    read by ``spark.read.parquet``, or an ML vector column): several models scored on the same rows in
    one pass; the boosters' raw margin (log-odds) instead of the probability with ``margin``."""
    import pyarrow as pa

    from features.spark_io import batch_csr

    linear = linear or {}
    keys = {name: digest(raw) for name, raw in boosters.items()}
    shared = spark.sparkContext.broadcast(boosters)
    threads = int(spark.conf.get("spark.task.cpus", "1"))
    names = list(boosters)
    kind = "margin" if margin else "value"
    out_names = ["row_id", "label", "w", *carry, *[f"p_{n}" for n in [*names, *linear]]]

    def score(batches):
        models = {n: narrowed(keys[n], shared.value[n], threads, keep=len(names)) for n in names}
        for b in batches:
            if b.num_rows == 0:
                continue
            preds = [pa.array(p) for p in predict_csr([models[n] for n in names], list(linear.values()),
                                                      batch_csr(b, width), kind)]
            yield pa.RecordBatch.from_arrays([b.column("row_id"), b.column("label").cast(pa.int32()),
                                              b.column("w").cast(pa.float64()),
                                              *[b.column(c).cast(pa.float64()) for c in carry], *preds],
                                             names=out_names)

    w = F.col(weight_col).cast("double") if weight_col else F.lit(1.0)
    ddl = ", ".join(f"{n} {'bigint' if n == 'row_id' else 'int' if n == 'label' else 'double'}" for n in out_names)
    return features.select("row_id", "label", w.alias("w"), *carry, "features").mapInArrow(score, ddl)


def vocabulary_drift(spark: SparkSession, t: Any, rows: DataFrame) -> dict[str, dict[str, Any]]:
    """Per vocabulary column of the fitted transform ``t``: rows with a value, how many are out of the
    train vocabulary, the share."""
    import pyarrow as pa

    from features.encode import vocabulary_misses

    if not t.vocab:
        return {}
    shared = spark.sparkContext.broadcast(t)

    def count(batches):
        fitted = shared.value
        totals: dict[str, list[int]] = {c: [0, 0] for c in fitted.vocab}
        for b in batches:
            for c, (present, oov) in vocabulary_misses(fitted, b.to_pandas()).items():
                totals[c][0] += present
                totals[c][1] += oov
        yield pa.RecordBatch.from_pydict({"column": list(totals), "present": [v[0] for v in totals.values()],
                                          "oov": [v[1] for v in totals.values()]})

    got = (rows.select(*t.vocab).mapInArrow(count, "column string, present long, oov long")
           .groupBy("column").agg(F.sum("present").alias("present"), F.sum("oov").alias("oov")).collect())
    out = {}
    for r in sorted(got, key=lambda r: list(t.vocab).index(r["column"])):
        present, oov = int(r["present"]), int(r["oov"])
        out[r["column"]] = {"rows_with_value": present, "out_of_vocabulary": oov,
                            "oov_share": oov / present if present else None}
    return out


def summarize(spark: SparkSession, path: str, recalibrated: bool, cfg: Config) -> dict[str, Any]:
    """Rows scored, mean prediction(s), and the metrics of p_ctr when labels are present."""
    df = spark.read.parquet(path)
    aggs = [F.count(F.lit(1)).alias("rows"), F.avg("p_ctr").alias("mean_p"), F.count("label").alias("labelled"),
            F.avg("label").alias("ctr")]
    if recalibrated:
        aggs.append(F.avg("p_ctr_recalibrated").alias("mean_p_recal"))
    r = df.agg(*aggs).first()
    out: dict[str, Any] = {"rows_scored": int(r["rows"]), "mean_prediction": r["mean_p"],
                           "rows_with_label": int(r["labelled"]), "observed_ctr": r["ctr"]}
    if recalibrated:
        out["mean_prediction_recalibrated"] = r["mean_p_recal"]
    if out["rows_with_label"]:
        labelled = df.filter(F.col("label").isNotNull()).withColumn("w", F.lit(1.0))
        try:
            m, _ = sm.metrics(labelled, "p_ctr", "scored rows", cfg.evaluation.reliability_bins,
                              cfg.evaluation.exact_auc_limit)
            out["metrics"] = {k: m[k] for k in ("mxe", "ne", "auc", "pr_auc", "calibration")}
        except InputDataError as exc:   # one class only: no AUC; say why instead
            out["metrics"] = {"skipped": str(exc)}
    return out


def score(spark: SparkSession, bundle: ModelBundle, cfg: Config, out: Location,
          labeled: bool = True) -> dict[str, Any]:
    """Score ``cfg.input.path`` with ``bundle`` into ``out`` (see the module docstring); returns the report.
    ``labeled=False`` reads logs without the label column (the predictions' label is then null)."""
    from features.state import FittedTransform

    w = negative_rate(cfg)
    report = read_input(spark, cfg, str(out / "quarantine"), labeled=labeled)
    try:
        rows = report.good
        log.info("score: %s rows read, %s quarantined; scoring with %s", f"{report.rows_read:,}",
                 f"{report.rows_bad:,}", bundle.label)
        t = FittedTransform.load(bundle.transform)
        predictions(spark, bundle, t, rows, w).write.parquet(str(out / "predictions"))
        drift = vocabulary_drift(spark, t, rows)
    finally:
        report.release()
    doc = {"model": bundle.label, "model_info": {k: bundle.info.get(k) for k in ("version", "lineage", "source_run")
                                                 if bundle.info.get(k) is not None},
           "input": report.summary(), "negative_rate": w,
           **summarize(spark, str(out / "predictions"), w is not None, cfg), "vocabulary_drift": drift}
    (out / REPORT).write_text(json.dumps(doc, indent=1, default=json_default) + "\n")
    return doc


def prepare_output(out: Location, force: bool) -> Location:
    """Where to write: a fresh staging directory beside a local ``out`` (renamed into place by
    :func:`publish`), or ``out`` itself on S3 (where report.json, written last, marks it finished).
    Anything already at ``out`` is replaced only with ``force``; its ``logs`` (one file per ``score``
    invocation) are kept."""
    if out.exists() and [p for p in out.iterdir() if p.name != LOGS] and not force:
        what = "already holds scores" if (out / REPORT).exists() else "exists and is not empty"
        raise UserError(f"{out} {what}; pick another --out or add --force to replace it")
    if not out.is_local:
        out.rmtree()
        return out
    return out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"


def publish(staging: Location, out: Location) -> None:
    if staging == out:
        return
    trash = None
    if (out / LOGS).exists():
        (out / LOGS).move_to(staging / LOGS)
    if out.exists():
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.move_to(trash)
    staging.move_to(out)
    if trash is not None:
        trash.rmtree()


def summary_lines(doc: dict[str, Any], out: Location) -> list[str]:
    lines = [f"scored {doc['rows_scored']:,} rows ({doc['input']['rows_quarantined']:,} quarantined) with "
             f"{doc['model']}: mean prediction {doc['mean_prediction']:.5f}"
             + (f", observed CTR {doc['observed_ctr']:.5f}" if doc["rows_with_label"] else "")]
    m = doc.get("metrics", {})
    if "mxe" in m:
        lines.append(f"MXE {m['mxe']:.5f}, AUC {m['auc']:.4f}, calibration {m['calibration']:.3f}")
    worst = sorted(((v["oov_share"] or 0.0, c) for c, v in doc["vocabulary_drift"].items()), reverse=True)[:3]
    if worst:
        lines.append("out-of-vocabulary share, highest: " + ", ".join(f"{c} {s:.1%}" for s, c in worst))
    lines.append(f"predictions: {out / 'predictions'}; report: {out / REPORT}")
    return lines
