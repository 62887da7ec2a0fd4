"""``ctr-pipeline refresh``: challengers to the registry's champion from a new window, on Spark.

1. The window's sets: the sample stage (ScalableSRS, the champion's sampling settings unless
   overridden) in a work run directory ``REGISTRY/refresh/work/<window key>/``, so a killed refresh
   resumes from them.
2. The sets through the champion's fitted transform (never refitted: the trees' vector layout stays).
3. Challengers: ``refresh`` (the champion's leaves refitted on the new train set, computed on Spark:
   :mod:`training.refresh_spark`), ``continuation`` (more trees from the champion, early stopping on the
   new validation set), ``retrain`` (optional: the features and train stages from scratch).
4. Champion and challengers scored on the same new holdout (the test set); metrics and the evaluate
   stage's paired bootstrap against the champion.
5. The rule (:func:`ctr_pipeline.refresh.decide.decide`); then, each write under the registry's own
   lock, the best challenger becomes a version with the ``challenger`` alias, the ``champion`` alias
   moves only when the rule says so, and the decision record is written, last of all the window's marker.

Nothing reaches the registry's versions or aliases before step 5 (the work directory and the logs live
under ``REGISTRY/refresh/``), so a refresh killed earlier leaves them as they were; a version made for
this window by a killed run is found again by its lineage instead of being copied twice.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Optional

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ..errors import ConfigError, InputDataError
from ..pipeline import run_stage, run_stages
from ..registry.bundle import BOOSTER, ModelBundle, from_run
from ..registry.store import Registry, now_utc
from ..runs import RunDir
from ..schema import SPLIT_NAMES, Config
from ..stage import json_default
from ..storage import Location
from . import decide as rules

log = logging.getLogger("ctr_pipeline.refresh")


def refresh_dir(registry: Registry) -> Location:
    return registry.root / "refresh"


def done_before(registry: Registry, key: str) -> Optional[dict[str, Any]]:
    """The decision record of an earlier refresh on the same window, if any."""
    marker = refresh_dir(registry) / "windows" / f"{key}.json"
    return json.loads(marker.read_text()) if marker.exists() else None


# ---------------------------------------------------------------------------------------------- steps

def champion_features(spark: SparkSession, t: Any, work: RunDir) -> dict[str, str]:
    """The window's sets through the champion's fitted transform ``t``: feature Parquet per set."""
    from features.spark_job import check_columns, transform, write_features

    out, paths = work.root / "champion_features", {}
    splits = work.path_of("sample")
    for name in SPLIT_NAMES:
        if not (splits / name).is_dir():
            continue
        df = spark.read.parquet(str(splits / name))
        check_columns(df.columns, t.spec, f"{splits / name} (the champion's feature transform)")
        (out / name).rmtree()
        write_features(transform(spark, t, df), t.width, str(out / name))
        paths[name] = str(out / name)
    return paths


def continued(spark: SparkSession, cfg: Config, booster: Any, feats: dict[str, str], width: int) -> tuple[Any, dict]:
    """The champion with up to refresh.extra_trees more trees, cut where validation MXE stops improving.

    The new trees are trained on the champion's margins as base margin (what continued training does)
    and appended to the champion's trees; the number kept follows XGBoost's early-stopping rule on the
    window's validation set (no improvement for refresh.early_stopping_rounds trees), evaluated here on
    the sparse rows. Both detours avoid xgboost.spark predicting on its QuantileDMatrix (``xgb_model``
    predicts the champion's trees there, a validation set is evaluated there every round), which is very
    slow on these wide sparse vectors: at 800,000 demo rows the two fits sat in XGBoost's QuantileDMatrix
    predictor (seen with py-spy) for about 9 and 6 minutes before I stopped them; this whole challenger
    then took 90 s. Why that predictor is slow was not investigated.
    """
    from xgboost import Booster
    from xgboost.spark import SparkXGBClassifier

    from evaluation.scoring import predict_features
    from features.spark_io import read_features
    from training.core import estimator_params, workers_for
    from training.refresh import Trees

    from ..spark import task_slots

    r = cfg.refresh
    params = {k: v for k, v in estimator_params(cfg).items() if k != "validation_indicator_col"}
    params["num_workers"] = workers_for(params["num_workers"], task_slots(spark), cfg.source_of("training.num_workers"))
    params.update(n_estimators=r.extra_trees, base_margin_col="base_margin")
    raw = {"champion": bytes(booster.save_raw("ubj"))}
    margins = predict_features(spark, raw, spark.read.parquet(feats["train"]), width, margin=True)
    train = read_features(spark, feats["train"]).join(
        margins.select("row_id", F.col("p_champion").alias("base_margin")), "row_id")
    if "weight" in train.columns:
        params["weight_col"] = "weight"
    added = SparkXGBClassifier(**params).fit(train).get_booster()
    curve = validation_curve(spark, raw["champion"], bytes(added.save_raw("ubj")), feats["validation"], width)
    keep = early_stop(curve, r.early_stopping_rounds)
    trees = Trees.from_json(bytes(booster.save_raw("json")))
    if keep:
        trees.extend(Trees.from_json(bytes(added[:keep].save_raw("json"))))
    out = Booster()
    out.load_model(bytearray(trees.to_json()))
    return out, {"trees_before": booster.num_boosted_rounds(), "trees_trained": added.num_boosted_rounds(),
                 "trees_added": keep, "validation_mxe": curve}


def early_stop(curve: list[float], patience: int) -> int:
    """How many added trees XGBoost's early stopping keeps, from validation MXE after 0, 1, 2... added
    trees: training stops once the best has not improved for ``patience`` trees; the best is kept."""
    best = 0
    for k in range(1, len(curve)):
        if k - best > patience:
            break
        if curve[k] < curve[best]:
            best = k
    return best


def validation_curve(spark: SparkSession, champion: bytes, added: bytes, path: str, width: int) -> list[float]:
    """Validation MXE of the champion plus the first k added trees, for k = 0 .. all (weighted)."""
    import numpy as np
    import pyarrow as pa

    from features.spark_io import batch_csr

    shared = spark.sparkContext.broadcast((champion, added))
    df = spark.read.parquet(path)
    weight = "weight" if "weight" in df.columns else None

    def losses(batches):
        import xgboost

        from ctr_pipeline.narrow import narrow

        models = []   # narrowed to the columns their trees split on: each predict costs rows x those columns
        for raw in shared.value:
            b = xgboost.Booster()
            b.load_model(bytearray(raw))
            b.set_param({"nthread": 1})
            models.append(narrow(b))
        rounds = models[1].booster.num_boosted_rounds()
        sums, total = np.zeros(rounds + 1), 0.0
        for b in batches:
            if b.num_rows == 0:
                continue
            csr = batch_csr(b, width)
            y = b.column("label").to_numpy(zero_copy_only=False).astype(np.float64)
            w = b.column(weight).to_numpy(zero_copy_only=False) if weight else np.ones(b.num_rows)
            base = models[0].predict(csr, predict_type="margin")
            dm = xgboost.DMatrix(models[1].take(csr), missing=0.0, base_margin=base)
            for k in range(rounds + 1):
                margin = base if k == 0 else models[1].booster.predict(dm, output_margin=True, iteration_range=(0, k))
                p = np.clip(1.0 / (1.0 + np.exp(-np.asarray(margin, np.float64))), 1e-15, 1 - 1e-15)
                sums[k] += float(np.sum(w * -(y * np.log(p) + (1 - y) * np.log1p(-p))))
            total += float(w.sum())
        yield pa.RecordBatch.from_arrays([pa.array(np.arange(rounds + 1, dtype=np.int32)), pa.array(sums),
                                          pa.array(np.full(rounds + 1, total))], names=["k", "loss", "weight"])

    got = (df.select("label", *([weight] if weight else []), "features")
           .mapInArrow(losses, "k int, loss double, weight double").groupBy("k")
           .agg(F.sum("loss").alias("loss"), F.sum("weight").alias("weight")).orderBy("k").collect())
    return [r["loss"] / r["weight"] for r in got]


def build_challengers(spark: SparkSession, cfg: Config, champion: ModelBundle, work: RunDir,
                      feats: dict[str, str], width: int) -> tuple[dict[str, Any], dict[str, dict]]:
    """(boosters by name, facts by name) of the challengers that apply; the champion's transform."""
    from training.refresh import RefreshParams
    from training.refresh_spark import refresh

    r = cfg.refresh
    base = champion.load_booster()
    train = spark.read.parquet(feats["train"])
    weight = "weight" if "weight" in train.columns else None
    params = RefreshParams.from_training(champion.info.get("training", {}).get("params", {}),
                                         refresh_leaf=r.refresh_leaf)
    log.info("refresh: refreshing the champion's %d trees on the new train set", base.num_boosted_rounds())
    boosters, facts = {}, {}
    boosters["refresh"], facts["refresh"] = refresh(spark, base, train, width, params, weight)
    facts["refresh"]["params"] = vars(params)
    if r.extra_trees and "validation" in feats:
        log.info("refresh: continuing the champion with up to %d trees (early stopping after %d)", r.extra_trees,
                 r.early_stopping_rounds)
        t0 = time.perf_counter()
        boosters["continuation"], facts["continuation"] = continued(spark, cfg, base, feats, width)
        facts["continuation"]["seconds"] = round(time.perf_counter() - t0, 3)
    elif r.extra_trees:
        log.warning("refresh: no validation set in the window (sampling.validation is 0): no continuation")
    return boosters, facts


def holdout_scores(spark: SparkSession, champion: ModelBundle, boosters: dict[str, Any], feats: dict[str, str],
                   width: int, retrain: Optional[ModelBundle], work: RunDir):
    """row_id, label, w, p_champion, p_<challenger>... on the window's holdout (persisted)."""
    from evaluation.scoring import predict_features

    raw = {"champion": champion.booster.read_bytes(),
           **{n: bytes(b.save_raw("ubj")) for n, b in boosters.items()}}
    test = spark.read.parquet(feats["test"])
    weight = "weight" if "weight" in test.columns else None
    df = predict_features(spark, raw, test, width, weight)
    if retrain is not None:
        from features.state import FittedTransform

        own = spark.read.parquet(str(work.path_of("features") / "test"))
        width_r = FittedTransform.load(retrain.transform).width
        p = predict_features(spark, {"retrain": retrain.booster.read_bytes()}, own, width_r, weight)
        df = df.join(p.select("row_id", "p_retrain"), "row_id", "inner")
    return df.persist(StorageLevel.MEMORY_AND_DISK)


def compare(df, names: list[str], cfg: Config) -> tuple[dict[str, Any], dict[str, dict]]:
    """Holdout metrics of the champion, and of each challenger with its bootstrap against the champion."""
    from evaluation import spark_metrics as sm

    e, r = cfg.evaluation, cfg.refresh
    keep = ("rows", "positives", "mxe", "ne", "auc", "pr_auc", "calibration", "base_rate")
    champ, _ = sm.metrics(df, "p_champion", "the window's holdout", e.reliability_bins, e.exact_auc_limit)
    champ = {k: champ[k] for k in keep}
    out = {}
    for name in names:
        m, _ = sm.metrics(df, f"p_{name}", "the window's holdout", e.reliability_bins, e.exact_auc_limit)
        m = {k: m[k] for k in keep}
        boot = sm.bootstrap(df, f"p_{name}", "p_champion", r.bootstrap, r.seed)
        m["relative_mxe_improvement"] = (champ["mxe"] - m["mxe"]) / champ["mxe"]
        m["improvement"] = boot["relative_mxe_improvement"]
        m["auc_difference"] = boot["auc_difference"]
        log.info("refresh: challenger %s: holdout MXE %.5f vs champion %.5f (%+.2f%%, interval [%+.2f%%, %+.2f%%]), "
                 "calibration %.3f", name, m["mxe"], champ["mxe"], 100 * m["relative_mxe_improvement"],
                 100 * m["improvement"]["interval"][0], 100 * m["improvement"]["interval"][1], m["calibration"])
        out[name] = m
    return champ, out


# ---------------------------------------------------------------------------------------------- publishing

def candidate_bundle(name: str, booster: Any, champion: ModelBundle, retrain: Optional[ModelBundle],
                     work: RunDir, metrics: dict, facts: dict) -> ModelBundle:
    """A challenger as a registry bundle: its booster with the champion's transform (or its own)."""
    if name == "retrain":
        bundle = retrain
    else:
        path = work.root / "candidates" / name / BOOSTER
        path.write_bytes(bytes(booster.save_raw("ubj")))
        training = {**champion.info.get("training", {}), "trees": booster.num_boosted_rounds(), name: facts}
        bundle = ModelBundle(f"{work.root} ({name})", path, champion.transform, champion.feature_map,
                             champion.features_summary, {**champion.info, "training": training})
    bundle.info = {**bundle.info, "metrics": {"test": metrics}, "source_run": work.root.uri}
    return bundle


def _write_record(registry: Registry, record: dict, window_done: bool) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    text = json.dumps(record, indent=1, default=json_default) + "\n"
    (refresh_dir(registry) / "decisions" / f"{stamp}-{record['window']['key']}.json").write_text(text)
    if window_done:
        (refresh_dir(registry) / "windows" / f"{record['window']['key']}.json").write_text(text)


def record_refusal(registry: Registry, key: str, files: list, champion: str, reason: str) -> None:
    """The decision record of a refused window (not marked done: a repaired window may be tried again)."""
    _write_record(registry, {"at": now_utc(), "window": {"key": key, "files": files},
                             "champion": {"version": champion},
                             "decision": {"action": "refused", "winner": None, "reason": reason}}, window_done=False)


def publish(registry: Registry, record: dict, bundle: Optional[ModelBundle]) -> None:
    """In this order, each registry write under its lock: version (found again if a killed run made it),
    challenger alias, champion alias when promoted, decision record, window marker (last)."""
    key, d = record["window"]["key"], record["decision"]
    if bundle is not None:
        method, parent = rules.KINDS[d["best"]], record["champion"]["version"]
        found = [v["version"] for v in registry.versions() if v.get("lineage", {}).get("window_key") == key
                 and v["lineage"].get("method") == method and v["lineage"].get("parent") == parent]
        version = found[-1] if found else registry.register(
            bundle, method=method, parent=parent, reason=f"refresh of window {key}",
            extra={"window_key": key, "data_window": record["window"]["files"]})
        d["version"] = version
        current = registry.alias_doc("challenger") or {}
        if current.get("version") != version:
            registry.promote(version, "challenger", f"best challenger of window {key} ({d['best']})")
        if d["action"] == "promote" and (registry.alias_doc("champion") or {}).get("version") != version:
            registry.promote(version, "champion", d["reason"])
    _write_record(registry, record, window_done=True)


# ---------------------------------------------------------------------------------------------- the job

def check_champion(champion: ModelBundle, cfg: Config) -> None:
    """UserError when the refresh cannot serve ``champion`` or ``cfg``: it builds and judges boosters only."""
    champion.check_refreshable("the refresh job")
    if cfg.training.model != "xgboost":
        raise ConfigError(f"{cfg.source_of('training.model')}: training.model: the refresh job builds and judges "
                          f"boosters only; {cfg.training.model} is not supported here, set training.model: xgboost "
                          "in the refresh configuration")


def run(spark: SparkSession, cfg: Config, registry: Registry, champion_version: str, key: str,
        files: list[dict[str, Any]]) -> dict[str, Any]:
    """Build, score and judge the challengers of one window; publish; return the decision record."""
    from evaluation.scoring import vocabulary_drift

    t0 = time.perf_counter()
    champion = registry.bundle(champion_version)
    check_champion(champion, cfg)
    work = RunDir(refresh_dir(registry) / "work" / key)
    run_stage("sample", cfg, work, lambda: spark, force=False)
    summary = json.loads(champion.features_summary.read_text()) if champion.features_summary else None
    ctr = spark.read.parquet(str(work.path_of("sample") / "train")).agg({"label": "avg"}).first()[0] or 0.0
    problem = rules.window_problem(ctr, (summary or {}).get("ctr"), cfg.refresh.max_ctr_ratio)
    if problem:
        raise InputDataError(f"{cfg.input.path}: window refused: {problem}")
    from features.state import FittedTransform

    transform = FittedTransform.load(champion.transform)
    feats, width = champion_features(spark, transform, work), transform.width
    if "train" not in feats or "test" not in feats:
        raise InputDataError(f"{cfg.source_of('sampling.test')}: the refresh needs train and test (holdout) sets "
                             "from the window; set sampling.train and sampling.test above 0")
    boosters, facts = build_challengers(spark, cfg, champion, work, feats, width)
    retrain = None
    if cfg.refresh.full_retrain:
        log.info("refresh: full retrain on the window (features and train stages from scratch)")
        t1 = time.perf_counter()
        run_stages(("features", "train"), cfg, work, lambda: spark)
        retrain = from_run(work.root)
        facts["retrain"] = {"seconds": round(time.perf_counter() - t1, 3), "trees": retrain.load_booster()
                            .num_boosted_rounds()}
    names = list(boosters) + (["retrain"] if retrain is not None else [])
    df = holdout_scores(spark, champion, boosters, feats, width, retrain, work)
    try:
        champ, cands = compare(df, names, cfg)
    finally:
        df.unpersist()
    vocab = vocabulary_drift(spark, transform, spark.read.parquet(str(work.path_of("sample") / "test")))
    decision = rules.decide(champ, cands, cfg.refresh.margin, cfg.refresh.calibration_band)
    record = {"at": now_utc(), "window": {"key": key, "files": files, "input": cfg.input.path,
                                          "rows": work.stage_record("sample")["rows"]},
              "champion": {"version": champion_version, "holdout": champ,
                           "recorded_test": champion.info.get("metrics", {}).get("test")},
              "candidates": cands, "facts": facts, "decision": decision,
              "drift": rules.drift(summary, champ, vocab), "seconds": None}
    best = decision.get("best")
    bundle = (candidate_bundle(best, boosters.get(best), champion, retrain, work, cands[best], facts.get(best, {}))
              if best else None)
    record["seconds"] = round(time.perf_counter() - t0, 1)
    publish(registry, record, bundle)
    return record
