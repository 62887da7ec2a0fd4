"""What the analysis notes show, as functions over a finished run directory or a registry: tables
(pandas DataFrames) and figures (PNG bytes). The notes only call these; the arithmetic lives here and
in the stages' own modules, so a note never carries logic of its own.

Pure functions take the documents a run wrote (manifest, metrics, summaries); the Spark ones take the
session and read the run's Parquet where it is (local or ``s3://``).
"""
from __future__ import annotations

import base64
import json
from typing import Any, Iterable, Mapping, Optional, Sequence

import pandas as pd

from ctr_pipeline.errors import UserError
from ctr_pipeline.runs import STAGES, RunDir



# ---------------------------------------------------------------------------------------------- opening

def open_run(ref: str) -> RunDir:
    """A run directory (local or ``s3://``), or a registry reference (``REGISTRY@champion``,
    ``REGISTRY@v3``): the run its version was trained in, as its lineage records it."""
    from ctr_pipeline.registry.core import parse_reference

    text = str(ref).strip()
    parsed = parse_reference(text)
    if parsed.selector is not None:
        source = open_registry(parsed.where).bundle(parsed.selector).info.get("source_run")
        run = RunDir(source) if source else None
        if run is None or not run.is_complete("train"):
            raise UserError(f"{text}: its source run {source or '(none recorded)'} has no complete train stage "
                            "(a refreshed version's work directory holds only its sets); give that version's "
                            "parent, or a run directory")
        return run
    run = RunDir(text)
    if not run.manifest_path.exists():
        raise UserError(f"{ref}: no manifest.json; give the --out directory of a 'ctr-pipeline run' "
                        "or REGISTRY@VERSION")
    return run


def document(run: RunDir, stage: str, name: str) -> dict[str, Any]:
    if not run.is_complete(stage):
        raise UserError(f"{run.root}: the '{stage}' stage is not complete; run 'ctr-pipeline {stage} "
                        f"--out {run.root}' first")
    return json.loads((run.path_of(stage) / name).read_text())


def metrics(run: RunDir) -> dict[str, Any]:
    return document(run, "evaluate", "metrics.json")


def png_html(png: bytes, width: int = 640) -> str:
    """A PNG as a Zeppelin ``%html`` display line."""
    return f"%html <img src=\"data:image/png;base64,{base64.b64encode(png).decode()}\" width=\"{width}\"/>"


# ---------------------------------------------------------------------------------------------- overview

def flatten(doc: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(flatten(value, name + "."))
        else:
            out.append((name, json.dumps(value) if isinstance(value, (list, dict)) else value))
    return out


def config_table(run: RunDir) -> pd.DataFrame:
    """The run's effective configuration, one row per key (``section.key``)."""
    return pd.DataFrame(flatten(run.manifest().get("config", {})), columns=["key", "value"])


def stage_table(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """Per stage: status, seconds, rows per set, rows per second, and its summary line(s)."""
    rows = []
    for stage in STAGES:
        rec = manifest.get("stages", {}).get(stage)
        if not rec:
            rows.append({"stage": stage, "status": "not run"})
            continue
        counts = rec.get("rows") or {}
        total = sum(counts.values())
        seconds = rec.get("seconds")
        rows.append({"stage": stage, "status": rec.get("status"), "seconds": seconds,
                     "rows": total, "rows_per_second": round(total / seconds) if seconds else None,
                     "sets": ", ".join(f"{k} {v:,}" for k, v in counts.items()),
                     "summary": " | ".join(rec.get("summary", []))})
    return pd.DataFrame(rows, columns=["stage", "status", "seconds", "rows", "rows_per_second", "sets", "summary"])


def sample_table(details: Mapping[str, Any]) -> pd.DataFrame:
    """Requested against obtained rows per set and stratum (ScalableSRS is exact: they should agree)."""
    rows = []
    strata = details.get("strata") or {}
    for stratum, body in strata.items():
        for split, requested in (body.get("requested") or {}).items():
            rows.append({"stratum": stratum, "set": split, "requested": requested,
                         "obtained": (body.get("obtained") or {}).get(split),
                         "inclusion_rate": (details.get("inclusion_rates") or {}).get(split, {}).get(stratum)})
    for split, body in (details.get("sets") or {}).items():
        rows.append({"stratum": "(all)", "set": split, "requested": body.get("requested"),
                     "obtained": body.get("obtained"), "inclusion_rate": None})
    return pd.DataFrame(rows, columns=["stratum", "set", "requested", "obtained", "inclusion_rate"]).astype(
        {"requested": "Int64", "obtained": "Int64"})


def input_table(details: Mapping[str, Any]) -> pd.DataFrame:
    """Rows read, good and quarantined per the sample stage's input report, and its files."""
    inp = details.get("input") or {}
    files = inp.get("files") or []
    return pd.DataFrame([{"files": len(files), "bytes": sum(f.get("bytes", 0) for f in files),
                          "rows_read": inp.get("rows_read"), "rows_good": inp.get("rows_good"),
                          "rows_quarantined": inp.get("rows_quarantined")}])


def quarantine_by_reason(spark, run: RunDir) -> pd.DataFrame:
    """Quarantined rows per reason and field, with one example line (file:line) each."""
    from pyspark.sql import functions as F

    where = run.path_of("sample") / "_quarantine"
    columns = ["reason", "field", "rows", "example"]
    if not where.is_dir() or not [p for p in where.files() if p.name.endswith(".json")]:
        return pd.DataFrame(columns=columns)
    df = spark.read.json(str(where))
    where_col = F.concat_ws(":", F.col("file"), F.col("line").cast("string")) if "line" in df.columns else F.col("file")
    out = (df.groupBy("reason", "field").agg(F.count(F.lit(1)).alias("rows"), F.first(where_col).alias("example"))
           .orderBy(F.desc("rows")).toPandas())
    return out[columns]


# ---------------------------------------------------------------------------------------------- features

def feature_columns(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Per input column of the features stage's train summary: kind, coverage, cardinality."""
    rows = [{"column": c["column"], "kind": c.get("kind"), "coverage": c.get("coverage"),
             "non_missing": c.get("non_missing"), "cardinality": c.get("cardinality")}
            for c in summary.get("columns", [])]
    return pd.DataFrame(rows, columns=["column", "kind", "coverage", "non_missing", "cardinality"])


def wilson(clicks: Sequence[float], rows: Sequence[float], level: float = 0.95) -> tuple[list[float], list[float]]:
    """Wilson score interval of a click rate per value (scipy's; well behaved at 0 clicks and small counts)."""
    from scipy.stats import binomtest

    low, high = [], []
    for k, n in zip(clicks, rows):
        if not n:
            low.append(float("nan"))
            high.append(float("nan"))
            continue
        ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
        low.append(float(ci.low))
        high.append(float(ci.high))
    return low, high


def split_frame(spark, run: RunDir, split: str = "train"):
    path = run.path_of("sample") / split
    if not path.is_dir():
        raise UserError(f"{run.root}: no '{split}' set in this run's sample stage")
    return spark.read.parquet(str(path))


def value_ctr(spark, run: RunDir, column: str, split: str = "train", top: int = 20) -> pd.DataFrame:
    """The ``top`` most frequent values of ``column`` in a set, with rows, clicks, CTR, its 95% Wilson
    interval, and lift over the set's CTR."""
    from pyspark.sql import functions as F

    df = split_frame(spark, run, split)
    if column not in df.columns:
        raise UserError(f"column {column!r} is not in the run's input layout; one of: {', '.join(df.columns)}")
    base = df.agg(F.avg(F.col("label").cast("double"))).first()[0] or 0.0
    out = (df.groupBy(F.col(column).cast("string").alias("value"))
           .agg(F.count(F.lit(1)).alias("rows"), F.sum(F.col("label").cast("long")).alias("clicks"))
           .orderBy(F.desc("rows"), F.asc("value")).limit(top).toPandas())
    out["ctr"] = out["clicks"] / out["rows"]
    out["ctr_low"], out["ctr_high"] = wilson(out["clicks"].tolist(), out["rows"].tolist())
    out["lift"] = out["ctr"] / base if base else float("nan")
    return out


def oov_by_split(spark, run: RunDir) -> pd.DataFrame:
    """Per vocabulary column and set: the share of present values that the train vocabulary lacks (0 on
    train for values kept by min_count; validation and test show what the model meets unseen)."""
    from evaluation.scoring import vocabulary_drift
    from features.state import FittedTransform

    t = FittedTransform.load(run.path_of("features") / "transform")
    rows = []
    for split in ("train", "validation", "test"):
        if not (run.path_of("sample") / split).is_dir():
            continue
        for column, v in vocabulary_drift(spark, t, split_frame(spark, run, split)).items():
            rows.append({"column": column, "set": split, "rows_with_value": v["rows_with_value"],
                         "out_of_vocabulary": v["out_of_vocabulary"], "oov_share": v["oov_share"]})
    table = pd.DataFrame(rows, columns=["column", "set", "rows_with_value", "out_of_vocabulary", "oov_share"])
    if not len(table):
        return table
    wide = table.pivot(index="column", columns="set", values="oov_share")
    wide = wide.reindex(index=list(t.vocab), columns=[s for s in ("train", "validation", "test") if s in wide.columns])
    return wide.reset_index().rename_axis(columns=None)


# ---------------------------------------------------------------------------------------------- model

def history(run: RunDir) -> dict[str, Any]:
    return document(run, "train", "history.json")


def learning_table(hist: Mapping[str, Mapping[str, Sequence[float]]]) -> pd.DataFrame:
    """Round by round MXE (log loss) on train and, when recorded, validation."""
    cols = {f"{split}_mxe": list(m.get("logloss", [])) for split, m in hist.items() if m.get("logloss")}
    n = max((len(v) for v in cols.values()), default=0)
    table = pd.DataFrame({"round": range(1, n + 1)})
    for name, values in cols.items():
        table[name] = values + [None] * (n - len(values))
    return table


def learning_png(run: RunDir) -> bytes:
    from evaluation import plots
    from training.core import best_round

    hist = history(run)
    return plots.learning_curves(hist, best_round(hist.get("validation", {}).get("logloss", [])))


def importances(run: RunDir, by_column: bool = False, top: int = 20) -> pd.DataFrame:
    name = "importances_by_column.tsv" if by_column else "importances.tsv"
    path = run.path_of("evaluate") / name
    if not path.is_file():
        raise UserError(f"{path}: missing; run 'ctr-pipeline evaluate --out {run.root}'")
    import io

    table = pd.read_csv(io.StringIO(path.read_text()), sep="\t")
    if "total_gain" in table.columns:
        table = table.sort_values("total_gain", ascending=False, kind="stable")
    return table.head(top).reset_index(drop=True)


def importances_png(run: RunDir, by_column: bool = False, top: int = 20) -> bytes:
    from evaluation import plots

    table = importances(run, by_column, top)
    name = "name" if "name" in table.columns else "source"
    title = "total gain by raw column" if by_column else "total gain by feature"
    return plots.importances(table[name].astype(str).tolist(), table["total_gain"].astype(float).tolist(), title)


def cv_table(run: RunDir) -> pd.DataFrame:
    """The cross-validated search's table (one row per candidate), or an empty table when the run did
    not search (``training.search_space`` empty, or the search skipped by ``training.search_budget``)."""
    meta = document(run, "train", "metadata.json")
    name = meta.get("cv_table")
    if not name:
        return pd.DataFrame(columns=["candidate", "note"]).astype(object)
    import io

    return pd.read_csv(io.StringIO((run.path_of("train") / name).read_text()), sep="\t")


def _csr(run: RunDir, split: str):
    """A (small) feature set on the driver: labels and a CSR matrix, for the trade-off curve."""
    import numpy as np
    import pyarrow.parquet as pq
    from scipy.sparse import vstack

    from features.spark_io import batch_csr

    width = int(json.loads((run.path_of("features") / "summary.json").read_text())["width"])
    with (run.path_of("features") / split).local_path() as path:
        table = pq.read_table(path, columns=["label", "features"])
    parts = [batch_csr(b, width) for b in table.to_batches() if b.num_rows]
    labels = np.asarray(table.column("label").to_numpy(), dtype=np.float64)
    return labels, vstack(parts).tocsr()


def trees_vs_mxe(run: RunDir, split: str = "validation", points: int = 20,
                 max_rows: int = 200_000) -> pd.DataFrame:
    """MXE on a set of the first k trees, for about ``points`` values of k: what early stopping, or a
    smaller model, would cost or save. Computed on the driver from at most ``max_rows`` rows. For a gbdt_lr
    run (training.model) these are its trees alone, without the logistic regression over their leaves."""
    import numpy as np
    import xgboost

    from evaluation.core import mxe

    rows = run.stage_record("features")["rows"].get(split, 0)
    if rows > max_rows:
        raise UserError(f"{run.root}: the {split} set has {rows:,} rows, over {max_rows:,} for the driver; "
                        "use a smaller set or raise max_rows")
    y, x = _csr(run, split)
    booster = xgboost.Booster()
    booster.load_model(bytearray((run.path_of("train") / "booster.ubj").read_bytes()))
    total = booster.num_boosted_rounds()
    ks = sorted({max(1, round(total * i / points)) for i in range(1, points + 1)})
    dm = xgboost.DMatrix(x, missing=0.0)
    out = [{"trees": k, f"{split}_mxe": mxe(y, booster.predict(dm, iteration_range=(0, k)))} for k in ks]
    table = pd.DataFrame(out)
    best = table[f"{split}_mxe"].min()
    table["vs_best"] = table[f"{split}_mxe"] / best - 1.0
    return table


def trees_png(table: pd.DataFrame) -> bytes:
    from evaluation import plots

    col = [c for c in table.columns if c.endswith("_mxe")][0]
    return plots.lines(table["trees"].tolist(), {col: table[col].tolist()}, "trees kept (first k)", "MXE (log loss)",
                       "Trees vs MXE: the cost of stopping earlier")


# ---------------------------------------------------------------------------------------------- evaluation

def model_table(m: Mapping[str, Any]) -> pd.DataFrame:
    """Per split and model (the shipped model, recalibrated, baselines): the evaluate stage's metrics."""
    from evaluation.report import model_rows

    keys = ["rows", "positives", "base_rate", "mxe", "ne", "auc", "pr_auc", "calibration"]
    splits = {s: body for s, body in m.items() if isinstance(body, Mapping) and "mxe" in body}  # metrics.json's form
    rows = model_rows({"model": m.get("model", "xgboost"), "splits": splits, "baselines": m.get("baselines", {})})
    return pd.DataFrame([{"split": s, "model": name, **{k: body.get(k) for k in keys}} for s, name, body in rows],
                        columns=["split", "model", *keys])


def bootstrap_table(m: Mapping[str, Any]) -> pd.DataFrame:
    """XGBoost against each baseline: relative MXE improvement and AUC difference with their paired
    bootstrap intervals."""
    rows = []
    for split, per in (m.get("comparison") or {}).items():
        for baseline, c in per.items():
            b = c.get("bootstrap") or {}
            mi = (b.get("relative_mxe_improvement") or {}).get("interval") or [None, None]
            ai = (b.get("auc_difference") or {}).get("interval") or [None, None]
            rows.append({"split": split, "against": baseline, "mxe_improvement": c.get("relative_mxe_improvement"),
                         "mxe_low": mi[0], "mxe_high": mi[1], "auc_difference": c.get("auc_difference"),
                         "auc_low": ai[0], "auc_high": ai[1], "replicates": b.get("replicates")})
    return pd.DataFrame(rows, columns=["split", "against", "mxe_improvement", "mxe_low", "mxe_high",
                                       "auc_difference", "auc_low", "auc_high", "replicates"])


def reliability_table(m: Mapping[str, Any], split: str = "test") -> pd.DataFrame:
    """Equal-count bins of the prediction: mean prediction against observed CTR."""
    body = m.get(split) or {}
    if "reliability" not in body:
        raise UserError(f"no '{split}' metrics with a reliability table in this run's evaluation")
    return pd.DataFrame(body["reliability"])


def lift_table(bins: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Lift by decile from equal-count bins, highest predictions first: each decile's CTR over the
    overall CTR, and the cumulative share of clicks captured."""
    table = pd.DataFrame(list(bins)).sort_values("bin", ascending=False).reset_index(drop=True)
    clicks = table["observed_ctr"] * table["rows"]
    overall = clicks.sum() / table["rows"].sum()
    table.insert(0, "decile", range(1, len(table) + 1))
    table["lift"] = table["observed_ctr"] / overall if overall else float("nan")
    table["cumulative_click_share"] = clicks.cumsum() / clicks.sum() if clicks.sum() else float("nan")
    return table[["decile", "rows", "mean_prediction", "observed_ctr", "lift", "cumulative_click_share"]]


def reliability_png(m: Mapping[str, Any], split: str = "test") -> bytes:
    from evaluation import plots
    from evaluation.report import short_name

    return plots.reliability(m[split]["reliability"], f"{short_name(m)}, {split}")


def scored_split(spark, run: RunDir, split: str = "test"):
    """The run's model applied to a set's raw rows (the scoring path): row_id, label, p_ctr, w = 1, and the
    raw columns, for segment metrics and ``%spark.sql``."""
    from pyspark.sql import functions as F

    from ctr_pipeline.registry.bundle import from_run
    from evaluation.scoring import predictions
    from features.state import FittedTransform

    bundle = from_run(run.root)
    t = FittedTransform.load(bundle.transform)
    raw = split_frame(spark, run, split)
    preds = predictions(spark, bundle, t, raw, None).drop("label")
    return raw.join(preds, "row_id").withColumn("w", F.lit(1.0))


def segment_table(scored, column: str) -> pd.DataFrame:
    """MXE, NE, AUC and calibration per value of ``column`` (the largest segments)."""
    from evaluation.spark_metrics import segment_metrics

    if column not in scored.columns:
        raise UserError(f"segment column {column!r} is not in the run's input layout")
    return pd.DataFrame(segment_metrics(scored, "p_ctr", column))


def compare_runs(spark, refs: Sequence[str], replicates: int = 200, seed: int = 29) -> pd.DataFrame:
    """Each run's model scored on the first run's test rows (raw rows, each model through its own
    transform), then every run against the first: test MXE, AUC, and the paired bootstrap interval of
    the relative MXE improvement and of the AUC difference."""
    from ctr_pipeline.registry.bundle import from_run
    from evaluation import spark_metrics as sm
    from evaluation.scoring import predictions
    from features.state import FittedTransform

    if len(refs) < 1:
        raise UserError("compare needs at least one run directory")
    runs = [open_run(r) for r in refs]
    raw = split_frame(spark, runs[0], "test")
    df = None
    for i, run in enumerate(runs):
        bundle = from_run(run.root)
        p = predictions(spark, bundle, FittedTransform.load(bundle.transform), raw, None)
        p = p.withColumnRenamed("p_ctr", f"p_{i}")
        df = p if df is None else df.join(p.drop("label"), "row_id")
    from pyspark.sql import functions as F

    df = df.withColumn("w", F.lit(1.0)).cache()
    try:
        rows = []
        first = None
        for i, run in enumerate(runs):
            m, _ = sm.metrics(df, f"p_{i}", f"{run.root} on the first run's test set", 10, 1_000_000)
            row = {"run": str(run.root), "rows": m["rows"], "mxe": m["mxe"], "auc": m["auc"],
                   "calibration": m["calibration"]}
            if i == 0:
                first = m
            else:
                b = sm.bootstrap(df, f"p_{i}", "p_0", replicates, seed)
                row.update({"mxe_improvement_vs_first": (first["mxe"] - m["mxe"]) / first["mxe"],
                            "mxe_low": b["relative_mxe_improvement"]["interval"][0],
                            "mxe_high": b["relative_mxe_improvement"]["interval"][1],
                            "auc_low": b["auc_difference"]["interval"][0],
                            "auc_high": b["auc_difference"]["interval"][1]})
            rows.append(row)
    finally:
        df.unpersist()
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- refresh

def open_registry(ref: str):
    from ctr_pipeline.registry.store import Registry

    return Registry.open(str(ref).strip())


def refresh_decisions(registry) -> pd.DataFrame:
    """One row per refresh decision, oldest first: window, champion and its holdout MXE, each
    candidate's MXE and interval, the action and why."""
    from ctr_pipeline.refresh.job import refresh_dir

    rows = []
    for path in sorted((refresh_dir(registry) / "decisions").glob("*.json"), key=lambda p: p.name):
        rec = json.loads(path.read_text())
        d = rec.get("decision", {})
        row = {"at": rec.get("at"), "window": rec.get("window", {}).get("key"),
               "rows": sum((rec.get("window", {}).get("rows") or {}).values()) or None,
               "champion": rec.get("champion", {}).get("version"),
               "champion_mxe": (rec.get("champion", {}).get("holdout") or {}).get("mxe"),
               "action": d.get("action"), "best": d.get("best"), "version": d.get("version"),
               "reason": d.get("reason"), "window_ctr": (rec.get("drift") or {}).get("window_ctr")}
        for name, c in (rec.get("candidates") or {}).items():
            low, high = c["improvement"]["interval"]
            row[f"{name}_mxe"] = c["mxe"]
            row[f"{name}_interval"] = f"[{low:+.2%}, {high:+.2%}]"
        rows.append(row)
    return pd.DataFrame(rows)


def alias_history(registry) -> pd.DataFrame:
    """Every alias move (promote, rollback) with who, when and why."""
    return pd.DataFrame(registry.history())


def versions_table(registry) -> pd.DataFrame:
    rows = []
    for v in registry.versions():
        lin = v.get("lineage", {})
        test = (v.get("metrics") or {}).get("test") or {}
        rows.append({"version": v.get("version"), "created": v.get("created"), "method": lin.get("method"),
                     "parent": lin.get("parent"), "window": lin.get("window_key"), "test_mxe": test.get("mxe"),
                     "test_auc": test.get("auc")})
    return pd.DataFrame(rows)


def refresh_png(decisions: pd.DataFrame) -> bytes:
    """Holdout MXE of the champion and of each candidate, window by window."""
    from evaluation import plots

    series = {name[:-4]: decisions[name].tolist() for name in decisions.columns if name.endswith("_mxe")}
    return plots.lines(list(range(1, len(decisions) + 1)), series, "refresh (oldest first)", "holdout MXE",
                       "refresh decisions")


def pick(value: Optional[str], fallback: str) -> str:
    """A form's value, or the fallback when the form was left empty."""
    return value.strip() if value and value.strip() else fallback


def default_segment(summary: Mapping[str, Any]) -> str:
    """The categorical column with the fewest distinct values (2 or more): a readable segment."""
    cats = [c for c in summary.get("columns", []) if c.get("kind") != "numeric" and (c.get("cardinality") or 0) >= 2]
    return min(cats, key=lambda c: (c["cardinality"], c["column"]))["column"] if cats else ""
