"""Spark adapter of the evaluation stage: score the splits with the model and the baselines, compute
every metric (on the driver for sets of up to ``local_metrics.LOCAL_ROWS`` rows, else on Spark), write
``evaluation/``: metrics.json, report.html (images embedded), report.md, importances.tsv,
importances_by_column.tsv and plots/*.png."""
from __future__ import annotations

import io
import json
import logging
from functools import cache, partial
from typing import Any, Optional

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ctr_pipeline.registry.bundle import LINEAR
from ctr_pipeline.schema import Config
from ctr_pipeline.spark import driver_reads, shape
from ctr_pipeline.stage import StageContext, StageResult, json_default
from features.spark_io import read_features, vector_width

from . import baselines, plots
from . import local_metrics as lm
from . import spark_metrics as sm
from .core import IMPORTANCE_TYPES, importance_by_column, importance_table
from . import gbdt_lr
from .report import LABELS, TREES, html_report, labels, markdown_summary, model_notes, summary_lines

log = logging.getLogger("ctr_pipeline.evaluation")


def negative_rate(cfg: Config) -> Optional[float]:
    """w of p' = p / (p + (1 - p) / w) when train was drawn with label strata rates: the negatives' rate
    relative to the positives' (sampling.strata_rates on the label); None otherwise."""
    s = cfg.sampling
    if not s.strata_rates or s.stratify_by not in ("label", cfg.input.label):
        return None
    r0, r1 = float(s.strata_rates.get("0", 1.0)), float(s.strata_rates.get("1", 1.0))
    return None if r0 == r1 else r0 / r1


def scored_split(ctx: StageContext, booster_raw: bytes, fitted: dict, split: str, shipped=None) -> DataFrame:
    """row_id, label, w, p_xgboost, p_<baseline>..., [segment column] of one split. p_xgboost is the model
    the run ships: the booster, or ``shipped`` (a :class:`evaluation.gbdt_lr.GbdtLrModel`), whose trees
    alone are then scored too, as p_trees.

    XGBoost and the linear models are scored in one Arrow pass over the stored CSR rows
    (``Booster.inplace_predict``, as batch scoring does); MLlib baselines by their own ``transform``."""
    from .scoring import predict_features

    feats = read_features(ctx.spark, str(ctx.run.path_of("features") / split))
    mllib = [n for n, m in fitted.items() if not baselines.driver_scored(m)]
    linear = {n: m for n, m in fitted.items() if baselines.driver_scored(m)}
    boosters = {"xgboost": booster_raw}
    if shipped is not None:
        boosters, linear = {TREES: booster_raw}, {"xgboost": shipped, **linear}
    df = baselines.add_probabilities(fitted, feats)
    df = predict_features(ctx.spark, boosters, df, vector_width(feats),
                          "weight" if "weight" in feats.columns else None, linear=linear,
                          carry=tuple(f"p_{n}" for n in mllib))
    keep = ["row_id", "label", "w", "p_xgboost", *[f"p_{n}" for n in fitted],
            *([f"p_{TREES}"] if shipped is not None else [])]
    df = df.select(*keep)
    seg = ctx.cfg.evaluation.segment_by
    if seg:
        raw = ctx.spark.read.parquet(str(ctx.run.path_of("sample") / split)).select("row_id", F.col(seg))
        df = df.join(raw, "row_id", "left")
    return df


def scored_in_driver(ctx: StageContext, booster_raw: bytes, fitted: dict, split: str,
                     shipped=None) -> Optional[pd.DataFrame]:
    """:func:`scored_split`'s rows as a pandas frame, scored in the driver from the local feature Parquet (no
    Spark job), or None where Spark scores them: an MLlib baseline, ``evaluation.segment_by``, a run directory
    elsewhere or a master that is not local. The same rows and predictions (tested)."""
    import numpy as np

    from features.arrow_io import parquet_rows, read_csr

    from .boosters import digest, narrowed
    from .scoring import predict_csr

    feats = ctx.run.path_of("features") / split
    if (not driver_reads(ctx.spark, feats) or ctx.cfg.evaluation.segment_by
            or any(not baselines.driver_scored(m) for m in fitted.values())
            or parquet_rows(feats) > lm.LOCAL_ROWS):
        return None
    boosters, linear = {"xgboost": booster_raw}, dict(fitted)
    if shipped is not None:
        boosters, linear = {TREES: booster_raw}, {"xgboost": shipped, **linear}
    weighted = bool(ctx.upstream_details("features").get("weight"))
    x, cols = read_csr(feats, int(ctx.upstream_details("features")["vector_width"]),
                       ("row_id", "label", "weight") if weighted else ("row_id", "label"), dtype=np.float64)
    threads = shape(ctx.spark).parallelism
    models = [narrowed(digest(raw), raw, threads, keep=len(boosters)) for raw in boosters.values()]
    preds = predict_csr(models, list(linear.values()), x)
    frame = pd.DataFrame({"row_id": cols["row_id"].astype(np.int64), "label": cols["label"].astype(np.int32),
                          "w": cols["weight"].astype(np.float64) if weighted else np.ones(len(cols["row_id"]))})
    for name, p in zip([*boosters, *linear], preds):
        frame[f"p_{name}"] = p
    keep = ["row_id", "label", "w", "p_xgboost", *[f"p_{n}" for n in fitted],
            *([f"p_{TREES}"] if shipped is not None else [])]
    return frame[keep]


def importances(ctx: StageContext, booster) -> tuple[pd.DataFrame, pd.DataFrame]:
    fmap_path = ctx.run.path_of("features") / "feature_map.tsv"
    fmap = (pd.read_csv(io.StringIO(fmap_path.read_text()), sep="\t", keep_default_na=False) if fmap_path.exists()
            else pd.DataFrame(columns=["index", "name", "group", "source"]))
    scores = {t: booster.get_score(importance_type=t) for t in IMPORTANCE_TYPES}
    table = importance_table(scores, fmap)
    return table, importance_by_column(table)


def _records(frame: pd.DataFrame, n: Optional[int] = None) -> list[dict[str, Any]]:
    part = frame if n is None else frame.head(n)
    return json.loads(part.to_json(orient="records"))


def run(ctx: StageContext) -> StageResult:
    import xgboost

    e = ctx.cfg.evaluation
    model_dir = ctx.run.path_of("train")
    raw_booster = (model_dir / "booster.ubj").read_bytes()
    booster = xgboost.Booster()
    booster.load_model(bytearray(raw_booster))
    shipped = None
    if (model_dir / LINEAR).exists():
        shipped = gbdt_lr.from_bytes(raw_booster, (model_dir / LINEAR).read_bytes())
    fitted, settings = {}, {}
    if e.baselines:
        feats = ctx.run.path_of("features")
        held = feats if driver_reads(ctx.spark, feats) else None
        train = cache(partial(read_features, ctx.spark, str(feats / "train")))   # read when Spark needs it
        valid = cache(partial(read_features, ctx.spark, str(feats / "validation"))) \
            if (feats / "validation").is_dir() else None
        for name in e.baselines:
            fitted[name], settings[name] = baselines.fit(name, ctx.cfg, train, valid, raw_booster, held=held)
    w = negative_rate(ctx.cfg)
    compared = [*fitted, *([TREES] if shipped is not None else [])]
    models = ["xgboost", *compared]
    report_split = "test" if "test" in e.splits else e.splits[-1]
    out: dict[str, Any] = {"model": "xgboost" if shipped is None else "gbdt_lr", "splits": {},
                           "baselines": {n: {} for n in compared}, "comparison": {},
                           "negative_rate": w, "segment_by": e.segment_by, "baseline_settings": settings}
    tables: dict[str, Any] = {}
    rows = {}
    split_rows = (ctx.run.stage_record("features") or {}).get("rows", {})
    for split in e.splits:
        scored = held = scored_in_driver(ctx, raw_booster, fitted, split, shipped)
        if held is None:
            scored = scored_split(ctx, raw_booster, fitted, split, shipped)
        local = held is not None or split_rows.get(split, lm.LOCAL_ROWS + 1) <= lm.LOCAL_ROWS
        # a small set comes to the driver once; a large one stays on Spark, persisted for the passes below
        mm, df = ((lm, held) if held is not None else (lm, scored.toPandas()) if local
                  else (sm, scored.persist(StorageLevel.MEMORY_AND_DISK)))
        try:
            for name in models:
                m, table = mm.metrics(df, f"p_{name}", split, e.reliability_bins, e.exact_auc_limit)
                if w is not None and split == "test":   # only train and validation were downsampled
                    m["recalibrated"], _ = mm.metrics(mm.with_recalibrated(df, f"p_{name}", w), f"p_{name}", split,
                                                      e.reliability_bins, e.exact_auc_limit)
                if name == "xgboost":
                    if e.segment_by:
                        m["segments"] = mm.segment_metrics(df, "p_xgboost", e.segment_by)
                    out["splits"][split] = m
                else:
                    out["baselines"][name][split] = m
                if split == report_split:
                    tables[name] = table
                log.info("evaluate: %s %s: AUC %.4f, MXE %.5f, NE %.4f, calibration %.3f on %s rows", split, name,
                         m["auc"], m["mxe"], m["ne"], m["calibration"], f"{m['rows']:,}")
            rows[split] = out["splits"][split]["rows"]
            for name in compared:
                mine, theirs = out["splits"][split], out["baselines"][name][split]
                c = {"relative_mxe_improvement": (theirs["mxe"] - mine["mxe"]) / theirs["mxe"],
                     "auc_difference": mine["auc"] - theirs["auc"]}
                if e.bootstrap and split == report_split:
                    log.info("evaluate: paired bootstrap, %d replicates, %s vs %s on %s", e.bootstrap, out["model"],
                             name, split)
                    c["bootstrap"] = mm.bootstrap(df, "p_xgboost", f"p_{name}", e.bootstrap, e.seed)
                out["comparison"].setdefault(split, {})[name] = c
        finally:
            if held is None:
                scored.unpersist()
    table, by_column = importances(ctx, booster)
    (ctx.out / "importances.tsv").write_text(table.to_csv(sep="\t", index=False))
    (ctx.out / "importances_by_column.tsv").write_text(by_column.to_csv(sep="\t", index=False))
    out["importances"] = {"top": _records(table, e.top_importances), "by_column": _records(by_column)}
    history_path = model_dir / "history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else {}
    best = ctx.upstream_details("train").get("best_iteration")
    images = make_plots(out, tables, history, best, table, by_column, report_split, e.top_importances)
    (ctx.out / "plots").mkdir()
    for name, png in images.items():
        (ctx.out / "plots" / f"{name}.png").write_bytes(png)
    title = f"Evaluation of {ctx.run.root.name}"
    notes = [f"Run: {ctx.run.root}. Splits: {', '.join(e.splits)}. Metrics of sets of up to {lm.LOCAL_ROWS:,} "
             "rows computed on the driver from the collected predictions (exact quantiles and AUC), of larger "
             "sets on Spark (quantiles within 1e-4 of the rank); AUC exact (ties count as half) unless "
             "auc_exact is false, then within auc_error_bound."]
    for name, setting in settings.items():
        if name == "gbdt_lr":
            notes.append(f"Baseline {LABELS[name]}: the trained booster's leaves ({setting['trees']} trees, one-hot) "
                         f"joined with the features, under an L2 logistic regression fit on {setting['fit_rows']:,} "
                         f"of the {setting['validation_rows']:,} validation rows (the trees never saw them); "
                         f"its L2 strength {setting['regParam']:g} was chosen on a held-out 20% of them.")
        elif setting["fit_rows"] < setting["train_rows"]:
            notes.append(f"Baseline {LABELS.get(name, name)} was fit on an exact random sample of "
                         f"{setting['fit_rows']:,} of the {setting['train_rows']:,} train rows "
                         "(evaluation.baseline_rows), which bounds its cost; "
                         + ("XGBoost used all of them." if shipped is None else
                            "the shipped model used all of them (its trees and its logistic regression, disjoint)."))
    notes += model_notes(ctx.upstream_details("train"))
    if w is not None:
        notes.append(f"Train and validation kept negatives at {w:g} times the positives' rate: test predictions "
                     "are also shown recalibrated, p' = p / (p + (1 - p) / w).")
    (ctx.out / "metrics.json").write_text(json.dumps({**out["splits"], **{k: v for k, v in out.items()
                                                                         if k != "splits"}}, indent=1,
                                                     default=json_default) + "\n")
    (ctx.out / "report.html").write_text(html_report(title, out, images, notes))
    (ctx.out / "report.md").write_text(markdown_summary(title, out, notes))
    summary = summary_lines(out) + [f"report: {ctx.final / 'report.html'}"]
    return StageResult(rows=rows, details={"metrics": {s: _brief(m) for s, m in out["splits"].items()}},
                       summary=summary)


def _brief(m: dict) -> dict:
    return {k: m[k] for k in ("rows", "positives", "mxe", "ne", "auc", "pr_auc", "calibration")}


def make_plots(out: dict, tables: dict, history: dict, best: Optional[int], table: pd.DataFrame,
               by_column: pd.DataFrame, split: str, top: int) -> dict[str, bytes]:
    base_rate = out["splits"][split]["base_rate"]
    models = {"xgboost": out["splits"][split], **{n: v[split] for n, v in out["baselines"].items()}}
    names = labels(out)
    roc = {names[n]: (*tables[n].roc_points(), models[n]["auc"]) for n in tables}
    pr = {names[n]: (*tables[n].pr_points(), models[n]["pr_auc"]) for n in tables}
    images = {"roc": plots.roc(roc), "precision_recall": plots.precision_recall(pr, base_rate),
              "reliability": plots.reliability(out["splits"][split]["reliability"], names["xgboost"])}
    images["learning_curves"] = (plots.learning_curves(history, best) if any(history.values()) else
                                 plots.message("no per-round history was recorded by the training stage"))
    if len(table):
        head = table.head(top)
        images["importances"] = plots.importances(head["name"], head["total_gain"], f"Top {len(head)} features")
        cols = by_column.head(top)
        images["importances_by_column"] = plots.importances(cols["source"], cols["total_gain"],
                                                            f"Top {len(cols)} raw columns")
    else:
        images["importances"] = plots.message("the model has no splits (no importances)")
    return images
