"""The analysis notes, written once: each note is a list of paragraphs (markdown, Python on Spark, or
Spark SQL) that :mod:`zeppelin.render` turns into a Zeppelin ``.zpln`` note and a Jupyter notebook.

Python paragraphs use only names every target defines in its setup paragraph: ``spark``, ``A`` (the
:mod:`zeppelin.analysis` functions), ``show`` (``show.table(frame)``, ``show.png(png_bytes)``) and the
note's parameters (Zeppelin forms, a tagged ``parameters`` cell in Jupyter), whose defaults come from
``CTR_NOTES_<NAME>`` environment variables or the demo's paths.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Param:
    name: str            # Python variable and form name
    default: str         # used when CTR_NOTES_<NAME> is not set
    label: str


@dataclass(frozen=True)
class Para:
    kind: str            # "md", "py" or "sql"
    title: str
    text: str


@dataclass(frozen=True)
class Note:
    slug: str
    name: str
    params: tuple[Param, ...]
    paras: tuple[Para, ...] = field(default_factory=tuple)


RUN = Param("RUN", "runs/demo", "run directory (local path or s3://bucket/prefix), or REGISTRY@VERSION")
REGISTRY = Param("REGISTRY", "runs/registry", "model registry (local path or s3://bucket/prefix)")


def md(title: str, text: str) -> Para:
    return Para("md", title, text.strip())


def py(title: str, text: str) -> Para:
    return Para("py", title, text.strip())


def sql(title: str, text: str) -> Para:
    return Para("sql", title, text.strip())


OVERVIEW = Note("run_overview", "Run overview", (RUN,), (
    md("About", """
# Run overview
What a `ctr-pipeline run` did: its configuration, each stage's time and rows, what the sampler was
asked for and obtained, and which input rows were quarantined and why. Set **RUN** to a run directory,
or to a registry reference (`REGISTRY@champion`, `REGISTRY@v3`) for the run that version was trained in."""),
    py("Open the run", """
run = A.open_run(RUN)
manifest = run.manifest()
print(f"run {run.root}: created {manifest.get('created')}, stages {', '.join(manifest.get('stages', {}))}")"""),
    py("Stages: time, rows, throughput", "show.table(A.stage_table(manifest))"),
    py("Configuration", "show.table(A.config_table(run))"),
    py("Input: rows read, good, quarantined", """
sample = run.stage_record('sample')['details']
show.table(A.input_table(sample))"""),
    py("Sample: requested vs obtained per set and stratum", "show.table(A.sample_table(sample))"),
    py("Quarantine by reason", "show.table(A.quarantine_by_reason(spark, run))"),
))

FEATURES = Note("features", "Features", (RUN, Param("COLUMN", "", "column for per-value CTR (empty: the "
                                                                     "lowest-cardinality categorical column)")), (
    md("About", """
# Features
Coverage and cardinality of every input column on train, the most frequent values of one column with
their click rate and 95% Wilson interval, and the share of values the train vocabulary lacks per set
(what the model meets unseen)."""),
    py("Open the run", """
run = A.open_run(RUN)
summary = A.document(run, 'features', 'summary.json')
column = A.pick(COLUMN, A.default_segment(summary))
print(f"train: {summary['rows']:,} rows, CTR {summary['ctr']:.4%}, vector width {summary['width']:,}; column {column}")"""),
    py("Coverage and cardinality per column", "show.table(A.feature_columns(summary))"),
    py("Top values with CTR and 95% interval", """
values = A.value_ctr(spark, run, column, top=50)
show.table(values.head(20))"""),
    py("Register the sets for SQL", """
for split in ('train', 'validation', 'test'):
    A.split_frame(spark, run, split).createOrReplaceTempView(split)
spark.createDataFrame(values).createOrReplaceTempView('value_ctr')"""),
    sql("CTR by value (SQL on the train set)", """
SELECT value, rows, clicks, ROUND(ctr, 5) AS ctr, ROUND(ctr_low, 5) AS ctr_low, ROUND(ctr_high, 5) AS ctr_high
FROM value_ctr ORDER BY rows DESC"""),
    sql("Rows and CTR per set", """
SELECT 'train' AS set, COUNT(*) AS rows, AVG(label) AS ctr FROM train
UNION ALL SELECT 'validation', COUNT(*), AVG(label) FROM validation
UNION ALL SELECT 'test', COUNT(*), AVG(label) FROM test"""),
    py("Out-of-vocabulary share by set", "show.table(A.oov_by_split(spark, run))"),
))

MODEL = Note("model", "Model", (RUN,), (
    md("About", """
# Model
Learning curves, importances per feature and per raw column, the cross-validated search (when the run
searched), and how validation MXE moves with the number of trees kept: the cost/accuracy trade-off of
stopping earlier."""),
    py("Open the run", """
run = A.open_run(RUN)
meta = A.document(run, 'train', 'metadata.json')
print(f"{meta['trees']} trees, params {meta['params']}, best iteration {meta.get('best_iteration')}")"""),
    py("Learning curves", "show.png(A.learning_png(run))"),
    py("Learning curves (table)", "show.table(A.learning_table(A.history(run)))"),
    py("Importances per feature", """
show.table(A.importances(run))
show.png(A.importances_png(run))"""),
    py("Importances per raw column", """
show.table(A.importances(run, by_column=True))
show.png(A.importances_png(run, by_column=True))"""),
    py("Cross-validation", "show.table(A.cv_table(run))"),
    py("Trees kept vs validation MXE", """
trees = A.trees_vs_mxe(run)
show.table(trees)
show.png(A.trees_png(trees))"""),
))

EVALUATION = Note("evaluation", "Evaluation", (
        RUN, Param("SEGMENT", "", "column to segment by (empty: the lowest-cardinality categorical column)"),
        Param("COMPARE", "", "other run directories to compare with RUN, comma-separated")), (
    md("About", """
# Evaluation
Test metrics of the model and the baselines with their paired bootstrap intervals, calibration and
reliability, lift by decile, metrics per segment, and a comparison of runs on the first run's test rows
(each model through its own feature transform, paired bootstrap against the first)."""),
    py("Open the run", """
run = A.open_run(RUN)
m = A.metrics(run)
summary = A.document(run, 'features', 'summary.json')
segment = A.pick(SEGMENT, A.default_segment(summary))
for line in run.stage_record('evaluate')['summary']:
    print(line)"""),
    py("Metrics per model", "show.table(A.model_table(m))"),
    py("XGBoost vs baselines: paired bootstrap", "show.table(A.bootstrap_table(m))"),
    py("Calibration and reliability", """
show.table(A.reliability_table(m))
show.png(A.reliability_png(m))"""),
    py("Lift by decile", "show.table(A.lift_table(m['test']['reliability']))"),
    py("Score the test set for segments and SQL", """
scored = A.scored_split(spark, run, 'test').cache()
scored.createOrReplaceTempView('scored_test')
show.table(A.segment_table(scored, segment))"""),
    sql("Calibration per score decile (SQL)", """
SELECT decile, COUNT(*) AS rows, ROUND(AVG(p_ctr), 5) AS mean_prediction, ROUND(AVG(label), 5) AS observed_ctr
FROM (SELECT p_ctr, label, NTILE(10) OVER (ORDER BY p_ctr DESC) AS decile FROM scored_test)
GROUP BY decile ORDER BY decile"""),
    py("Compare runs (paired bootstrap on the first run's test rows)", """
others = [r.strip() for r in (COMPARE or '').split(',') if r.strip()]
show.table(A.compare_runs(spark, [RUN, *others]))
scored.unpersist()"""),
))

REFRESH = Note("refresh_history", "Refresh history", (REGISTRY,), (
    md("About", """
# Refresh history
What the refresh cron decided, window by window: the champion's holdout MXE, each challenger's MXE and
bootstrap interval, and the action taken; the registry's versions and every alias move."""),
    py("Open the registry", """
registry = A.open_registry(REGISTRY)
decisions = A.refresh_decisions(registry)
print(f"{registry.root}: {len(registry.versions())} version(s), {len(decisions)} refresh decision(s)")"""),
    py("Decisions over time", "show.table(decisions)"),
    py("Holdout MXE per window", "show.png(A.refresh_png(decisions))"),
    py("Versions", "show.table(A.versions_table(registry))"),
    py("Alias moves (who, when, why)", "show.table(A.alias_history(registry))"),
))

NOTES = (OVERVIEW, FEATURES, MODEL, EVALUATION, REFRESH)
