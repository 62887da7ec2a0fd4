"""The configuration schema: one frozen dataclass per section, each field documented.

Field metadata keys: ``doc`` (shown in docs/config.md and ``ctr-pipeline config --schema``),
``choices``, ``min``/``max`` (inclusive), ``gt``/``lt`` (exclusive). Loading and validation live in
:mod:`ctr_pipeline.config`; this module only declares what exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

INPUT_FORMATS = ("criteo_dac", "csv", "parquet", "libsvm")
# The default search space, small and worth searching on rare-click data: depth, step, leaf size,
# max_delta_step (XGBoost's parameter notes suggest 1-10 for very unbalanced logistic regression) and L2.
DEFAULT_SEARCH_SPACE = {"max_depth": [4, 6, 8], "learning_rate": [0.05, 0.1, 0.2], "min_child_weight": [1, 5, 20],
                        "max_delta_step": [0, 1], "reg_lambda": [1, 10]}
SPLIT_NAMES = ("train", "validation", "test")


def _f(default: Any, doc: str, **checks: Any) -> Any:
    """A dataclass field with a default, a doc string and validation checks."""
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples and mappings via _fd for mutable defaults")
    return field(default=default, metadata={"doc": doc, **checks})


def _fd(factory: Any, doc: str, **checks: Any) -> Any:
    return field(default_factory=factory, metadata={"doc": doc, **checks})


@dataclass(frozen=True)
class InputConfig:
    path: Optional[str] = _f(None, "Input file, directory or glob (local path or URI). Required by `sample`; "
                                   "`--input` overrides it. `.gz` files are read transparently.")
    format: str = _f("criteo_dac", "Input layout: `criteo_dac` (tab-separated, no header: label, I1-I13, "
                                   "C1-C26), `csv` (header, declared columns), `parquet`, `libsvm`.",
                     choices=INPUT_FORMATS)
    delimiter: Optional[str] = _f(None, "Field separator for text layouts; default tab for criteo_dac, comma for csv.")
    label: str = _f("label", "Name of the 0/1 label column (csv and parquet).")
    numeric: tuple[str, ...] = _fd(tuple, "Numeric columns. criteo_dac: a subset of I1-I13 (default all).")
    categorical: tuple[str, ...] = _fd(tuple, "Categorical columns. criteo_dac: a subset of C1-C26 (default all).")
    time: Optional[str] = _f(None, "Optional time column (csv and parquet), stored as epoch seconds (UTC).")
    time_format: str = _f("%Y-%m-%d %H:%M:%S", "strptime format of the time column, or `epoch` for seconds "
                                               "since 1970-01-01 UTC.")
    drop: tuple[str, ...] = _fd(tuple, "Columns present in the data that are not used (e.g. leaky ones). "
                                       "Every csv/parquet column must be declared or dropped.")
    num_features: Optional[int] = _f(None, "libsvm: vector width (largest index + 1); computed from the data "
                                           "when not given.", min=1)
    max_bad_share: float = _f(0.01, "Largest share of malformed rows tolerated; malformed rows are written to "
                                    "the quarantine folder, and above this share the stage fails.", min=0.0, max=1.0)


@dataclass(frozen=True)
class SamplingConfig:
    seed: int = _f(42, "Seed of the sampling keys; the same seed and input give the same sets.", min=0)
    train: Union[int, float] = _f(0.8, "Train set size: an integer is a row count, a number with a decimal "
                                       "point a fraction of the (good) input rows; 1.0 means all rows.", min=0)
    validation: Union[int, float] = _f(0.1, "Validation set size, as for train (0 for none).", min=0)
    test: Union[int, float] = _f(0.1, "Test set size, as for train.", min=0)
    delta: float = _f(1e-4, "ScalableSRS failure probability per cut (at most 2*delta); on failure it retries "
                            "with a derived seed and says so.", gt=0.0, lt=0.5)
    stratify_by: Optional[str] = _f(None, "Column to stratify by (e.g. label): each set gets every stratum "
                                          "in proportion to its size.")
    engine: str = _f("auto", "Which implementation reads the input and draws the sample: `driver` (the "
                             "driver process reads the files and draws with numpy: a local master, input files "
                             "and run directory on this machine, plain or gzip delimited text), `spark` (Spark "
                             "jobs) or `mrjob` (the MapReduce job sampling/mr_srs.py); `auto` is driver where it "
                             "can run, else spark. All select the same rows for the same seed.",
                     choices=("auto", "driver", "spark", "mrjob"))
    mrjob_runner: str = _f("inline", "mrjob runner for engine mrjob: `inline`, `local`, `spark` or `emr` "
                                     "(mrjob's EMR runner, its mrjob.conf generated from emr.definition; "
                                     "needs an s3:// run directory).",
                           choices=("inline", "local", "spark", "emr"))
    out_of_time: Optional[str] = _f(None, "Out-of-time split: the test set is every row in the last window of "
                                          "input.time, e.g. `24h` or `2d` (units s, m, h, d); train and "
                                          "validation are drawn from the earlier rows and sampling.test is "
                                          "not used.")
    strata_sizes: Mapping[str, Any] = _fd(dict, "Explicit rows per stratum for a set, overriding the "
                                                "proportional split, e.g. `{train: {\"1\": 10000, \"0\": 50000}}`; "
                                                "needs stratify_by.")
    strata_rates: Mapping[str, float] = _fd(dict, "Per-stratum sampling rate for the train and validation "
                                                  "sets (negative downsampling), e.g. `{\"0\": 0.01}` keeps 1% of "
                                                  "non-clicks; needs stratify_by. Recorded for evaluation.")


NUMERIC_TRANSFORMS = ("raw", "log1p", "quantile", "none")
CATEGORICAL_ENCODINGS = ("vocab", "hash", "none")
TIME_FEATURES = ("hour", "weekday")


@dataclass(frozen=True)
class FeaturesConfig:
    numeric_transform: str = _f("raw", "Default transform of numeric columns: `raw` (the value), `log1p` "
                                       "(sign(x)*log(1+|x|)), `quantile` (bucket number 1..quantile_buckets from "
                                       "train quantiles) or `none` (not used). Missing stays missing.",
                                choices=NUMERIC_TRANSFORMS)
    quantile_buckets: int = _f(32, "Buckets of the `quantile` transform.", min=2, max=4096)
    categorical_encoding: str = _f("vocab", "Default encoding of categorical columns: `vocab` (one index per "
                                            "value seen at least min_count times in train, plus one "
                                            "out-of-vocabulary index per column), `hash` (the hashing trick into "
                                            "hash_buckets shared by all hashed columns) or `none` (not used).",
                                   choices=CATEGORICAL_ENCODINGS)
    min_count: int = _f(5, "Smallest train count of a value to get its own vocabulary index.", min=1)
    hash_buckets: int = _f(1 << 18, "Width of the shared hashed categorical block.", min=16, max=1 << 26)
    columns: Mapping[str, str] = _fd(dict, "Per-column override of the transform or encoding, e.g. "
                                           "`{I5: log1p, C3: hash, ip: none}`.")
    counts: tuple[str, ...] = _fd(tuple, "Categorical columns that get a count feature: how often the row's "
                                         "value occurs in train (e.g. `[ip, device]`).")
    target_encoding: tuple[str, ...] = _fd(tuple, "Categorical columns that get a smoothed CTR feature, "
                                                  "out-of-fold on train and from all of train elsewhere.")
    smoothing: float = _f(20.0, "Target encoding prior weight m: (clicks + m*CTR) / (count + m).", min=0.0)
    folds: int = _f(5, "Folds of the out-of-fold target encoding on train (by a stable hash of row_id).",
                    min=2, max=100)
    crosses: tuple[str, ...] = _fd(tuple, "Hashed crosses of categorical columns, each written `a*b`, e.g. "
                                          "`[site_id*device_model]`.")
    cross_buckets: int = _f(1 << 16, "Width of the shared hashed cross block.", min=16, max=1 << 26)
    time_features: tuple[str, ...] = _fd(lambda: TIME_FEATURES, "Features from input.time (UTC): `hour` "
                                                                "(0-23) and `weekday` (0 = Monday); ignored "
                                                                "without a time column.")
    weight: Optional[str] = _f(None, "A numeric input column used as the row weight (not as a feature).")
    libsvm: bool = _f(False, "Also write LIBSVM text (`features/<split>_libsvm/`, 1-based indices).")
    top_values: int = _f(10, "Top values per categorical column in the feature summary.", min=1, max=1000)
    seed: int = _f(17, "Seed of the target-encoding folds.", min=0)
    engine: str = _f("auto", "Which implementation fits the transform and writes the vectors: `driver` (the driver "
                             "process, with pyarrow and numpy: a local master, the run directory on this "
                             "machine, no `quantile` transform, text or integer categorical columns, train at "
                             "most 1/4 of the memory as Arrow), `spark` (Spark jobs) or `auto`: driver where "
                             "it can run, else spark. Both give the same transform and vectors; the driver's "
                             "summary counts distinct values and quantiles exactly, Spark's approximately.",
                     choices=("auto", "driver", "spark"))


@dataclass(frozen=True)
class TrainingConfig:
    engine: str = _f("auto", "Where the final model trains: `driver` (native XGBoost in the driver process on all "
                             "of train, read straight from the features' Parquet, with as many threads as the "
                             "local master has cores; about 55 bytes of driver memory per stored feature value), "
                             "`spark` (xgboost.spark on `num_workers` Spark barrier tasks) or `auto`: driver when "
                             "Spark's master is local, the device cpu and num_workers auto, spark otherwise. The "
                             "sampled search (search_rows > 0) runs in driver threads with the driver engine, "
                             "as Spark tasks with spark.",
                     choices=("auto", "driver", "spark"))
    num_workers: Union[int, str] = _f("auto", "XGBoost workers (Spark barrier tasks): `auto` (every task slot the "
                                              "session has, each worker using spark.task.cpus threads) or a "
                                              "number, at most the free task slots.", min=1)
    tree_method: str = _f("hist", "XGBoost tree method: `hist` (default: as good as approx on the demo and the "
                                  "real data sets, 3x faster) or `approx`; `gpu_hist` is the old name of `hist` on "
                                  "device cuda.",
                          choices=("approx", "hist", "gpu_hist"))
    device: str = _f("cpu", "`cpu` or `cuda`; cuda fails up front when no GPU is visible.", choices=("cpu", "cuda"))
    n_estimators: int = _f(100, "Boosting rounds (trees).", min=1, max=100_000)
    max_depth: int = _f(6, "Maximum tree depth.", min=1, max=64)
    learning_rate: float = _f(0.1, "Shrinkage per round (eta).", gt=0.0, max=1.0)
    early_stopping_rounds: Optional[int] = _f(20, "Stop when validation log loss has not improved for this "
                                                  "many rounds and keep the trees up to the best round; null: "
                                                  "always train n_estimators trees. Needs a validation split: "
                                                  "the default is off when sampling.validation is 0.", min=1)
    stopping_rows: int = _f(20_000, "Early stopping evaluates an exact random sample of this many validation rows "
                                    "each round (0: all of them). Measured on 1M demo rows: evaluating 20,000 rows "
                                    "added 20% to the training time on 800,000 rows, all 100,000 added 110%.",
                            min=0)
    params: Mapping[str, Any] = _fd(dict, "Further XGBoost parameters passed as they are, e.g. "
                                          "`{max_delta_step: 1, subsample: 0.8}`.")
    min_relative_gain: Optional[float] = _f(None, "Cost-aware early stopping: stop when the last gain_window trees "
                                                  "improved validation MXE by less than this share (e.g. 0.001); "
                                                  "needs a validation split.", gt=0.0, lt=1.0)
    gain_window: int = _f(20, "Trees over which min_relative_gain is measured.", min=1)
    checkpoint_every: int = _f(10, "Write the booster every this many rounds (0: never), so a failed or killed "
                                   "training resumes from it.", min=0)
    checkpoint_dir: Optional[str] = _f(None, "Where checkpoints go: a local path or s3://bucket/prefix (written with "
                                             "boto3); default RUN/checkpoints/train.")
    retries: int = _f(2, "Failed training attempts (lost executor, failed barrier stage) retried, each from the "
                         "newest checkpoint.", min=0, max=20)
    retry_backoff: float = _f(10.0, "Seconds before the first retry; doubles each time.", min=0.0)
    progress_every: int = _f(10, "Log a progress line (round, elapsed time, validation MXE) every this many "
                                 "rounds (0: never).", min=0)
    search_space: Mapping[str, Any] = _fd(lambda: {k: list(v) for k, v in DEFAULT_SEARCH_SPACE.items()},
                                          "Hyperparameter search by k-fold cross-validation on (a capped "
                                          "sample of) train, within search_budget: parameter -> list of values, "
                                          "or with random search also `{min, max, log}` ranges; `{}`: no search. "
                                          "The default is a small space: max_depth [4, 6, 8], learning_rate "
                                          "[0.05, 0.1, 0.2], min_child_weight [1, 5, 20], max_delta_step [0, 1], "
                                          "reg_lambda [1, 10]. A space given in a later layer replaces an earlier "
                                          "one whole. The chosen candidate is refit on all of train.", merge=False)
    search_method: str = _f("random", "`random` (search_candidates seeded draws from search_space) or `grid` "
                                      "(every combination).", choices=("grid", "random"))
    search_candidates: int = _f(5, "Candidates drawn by random search; the configured values are always one more "
                                   "(the first).", min=1, max=10_000)
    search_folds: int = _f(3, "Cross-validation folds (by a stable hash of row_id).", min=2, max=20)
    search_rows: int = _f(50_000, "The search runs on an exact random sample of this many train rows (0: all of "
                                   "train). A sample that size is held by each Spark task, which trains one "
                                   "(candidate, fold) with XGBoost on spark.task.cpus threads, all in parallel; "
                                   "with 0 every (candidate, fold) is a distributed xgboost.spark fit.", min=0)
    search_seed: int = _f(0, "Seed of the folds, of random search and of the sample.", min=0)
    search_budget: Optional[float] = _f(0.25, "The search trains on at most this multiple of the rows the final "
                                             "model trains on: each candidate costs (search_folds - 1) x "
                                             "min(search_rows, train rows) rows, and only the candidates that fit "
                                             "are run, the configured values first, the others in the order drawn; "
                                             "with fewer than two the search is skipped (the summary says so). "
                                             "0.25 searches 2 candidates on 800,000 train rows, none below "
                                             "800,000 and all 6 from 2.4M (rows cost more in the search's small, "
                                             "often deeper fits: at 0.25 the 1M demo's search took about half the "
                                             "final fit's time); null: no limit.", min=0.0)
    model: str = _f("xgboost", "The model the pipeline ships: `xgboost` (the booster) or `gbdt_lr` (He et al. "
                               "2014: the booster's leaves one-hot, joined with the features, under an L2 "
                               "logistic regression; the trees are fit on train less a held-out share, "
                               "gbdt_lr_share, on which the logistic regression is fit). The evaluation "
                               "compares a gbdt_lr model with its own trees alone.",
                    choices=("xgboost", "gbdt_lr"))
    gbdt_lr_share: float = _f(0.2, "With model gbdt_lr: the share of train rows (by a stable hash of row_id) held "
                                   "out of the trees' training to fit the logistic regression on (its L2 "
                                   "strength chosen on 20% of them); at most 4,000,000 rows, fit on the driver.",
                              gt=0.0, lt=1.0)


BASELINES = ("logistic_regression", "gbt", "gbdt_lr")


@dataclass(frozen=True)
class EvaluationConfig:
    splits: tuple[str, ...] = _fd(lambda: ("test",), "Splits to score and report (train, validation, test).")
    segment_by: Optional[str] = _f(None, "An input column to report every metric per value of (the 50 largest "
                                         "segments), e.g. `device`.")
    baselines: tuple[str, ...] = _fd(lambda: ("logistic_regression",),
                                     "Models trained on the same features and splits and reported beside the "
                                     "XGBoost model: `logistic_regression` (MLlib's L2 objective, fit on the "
                                     "driver), `gbt` (Spark MLlib GBTClassifier with the training depth, trees "
                                     "and learning rate; slow on wide vectors), `gbdt_lr` (the trained "
                                     "booster's leaves one-hot, joined with the features, under the same L2 "
                                     "logistic regression fit on the validation split, which the trees did "
                                     "not see; He et al. 2014).")
    baseline_rows: int = _f(200_000, "Train rows each baseline is fit on: an exact simple random sample of train "
                                      "of at most this many rows (0: all of train). Bounds the baselines' cost on "
                                      "large runs; the report names the rows used. Logistic regression takes "
                                      "at most 4,000,000 (it is fit in the driver's memory).", min=0)
    bootstrap: int = _f(200, "Paired bootstrap replicates for the MXE / AUC difference against each baseline "
                             "(0: none).", min=0, max=5000)
    seed: int = _f(29, "Seed of the bootstrap.", min=0)
    reliability_bins: int = _f(10, "Equal-count bins of the reliability table and diagram.", min=2, max=1000)
    top_importances: int = _f(20, "Features shown in the importance plot and summary.", min=1, max=1000)
    exact_auc_limit: int = _f(2_000_000, "Largest number of distinct scores for which AUC is computed exactly; "
                                         "above, scores are rounded to 7 decimals and the report gives the "
                                         "error bound.", min=1000)


@dataclass(frozen=True)
class SparkConfig:
    master: str = _f("local[*]", "Spark master: `local[N]`, `spark://host:port` or `yarn`. Ignored under "
                                 "spark-submit, which sets its own.")
    app_name: str = _f("ctr-pipeline", "Spark application name.")
    driver_memory: str = _f("4g", "Driver JVM heap (local mode), e.g. `4g`.")
    log_level: str = _f("WARN", "Spark log level.", choices=("ERROR", "WARN", "INFO", "DEBUG"))
    local_ip: str = _f("127.0.0.1", "Address Spark binds to locally (SPARK_LOCAL_IP); loopback by default.")
    progress_seconds: float = _f(30.0, "While a stage runs Spark jobs, log a progress line (tasks done, rows read "
                                       "and written, elapsed time) every this many seconds; 0 for none.", min=0)
    conf: Mapping[str, Any] = _fd(dict, "Extra Spark properties, e.g. `{spark.sql.shuffle.partitions: 64}`.")


@dataclass(frozen=True)
class AwsConfig:
    region: str = _f("us-east-1", "AWS region of the S3 buckets and EMR clusters (AWS_REGION overrides the "
                                  "default).")
    endpoint_url: Optional[str] = _f(None, "Endpoint for S3, EMR and IAM requests, e.g. a moto server in tests "
                                           "(`http://127.0.0.1:5000`); default AWS's own (or AWS_ENDPOINT_URL). "
                                           "Credentials never go here: they come from the environment, the "
                                           "AWS config files or the instance profile.")


@dataclass(frozen=True)
class EmrConfig:
    definition: str = _f("emr_configs/default.yaml", "Cluster definition used by `ctr-pipeline emr up` and "
                                                     "the mrjob EMR runner (a YAML file, see emr_configs/).")
    poll_seconds: float = _f(30.0, "Seconds between status polls while following EMR steps.", gt=0.0)
    log_tail_lines: int = _f(50, "Lines of a failed step's stderr printed from the log URI.", min=1, max=10_000)


@dataclass(frozen=True)
class RefreshConfig:
    refresh_leaf: bool = _f(True, "The refreshed challenger refits leaf values (XGBoost's refresh_leaf); false "
                                  "refreshes only the node statistics, which leaves predictions unchanged.")
    extra_trees: int = _f(50, "Trees the continued challenger may add to the champion (it stops early on the new "
                              "window's validation set); 0 skips this challenger.", min=0, max=10_000)
    early_stopping_rounds: int = _f(10, "Patience of the continued challenger's early stopping, in trees.", min=1)
    full_retrain: bool = _f(False, "Also train a challenger from scratch on the window (new feature transform).")
    margin: float = _f(0.0, "Smallest relative MXE improvement over the champion, on the window's holdout, that "
                            "the lower end of the bootstrap interval must exceed for a promotion (0.001 = 0.1%).",
                       min=-1.0, max=1.0)
    calibration_band: float = _f(0.1, "A challenger is promoted only if its holdout calibration (mean prediction "
                                      "/ observed CTR) lies within 1 +- this band.", gt=0.0, max=10.0)
    max_ctr_ratio: float = _f(3.0, "A window whose click rate differs from the champion's train click rate by more "
                                   "than this factor (either way) is refused as broken (e.g. clicks not logged).",
                              gt=1.0)
    bootstrap: int = _f(200, "Paired bootstrap replicates of the challenger-vs-champion comparison.", min=20,
                        max=5000)
    seed: int = _f(31, "Seed of that bootstrap.", min=0)
    stale_lock_seconds: float = _f(900.0, "A refresh lock whose heartbeat is older than this was left by a killed "
                                          "process and is taken over.", gt=0.0)


@dataclass(frozen=True)
class Config:
    input: InputConfig = _fd(InputConfig, "Where the raw logs are and how to read them.")
    sampling: SamplingConfig = _fd(SamplingConfig, "How train / validation / test are drawn.")
    features: FeaturesConfig = _fd(FeaturesConfig, "How raw columns become sparse vectors.")
    training: TrainingConfig = _fd(TrainingConfig, "Distributed XGBoost settings.")
    evaluation: EvaluationConfig = _fd(EvaluationConfig, "What is scored and reported.")
    spark: SparkConfig = _fd(SparkConfig, "The Spark session.")
    aws: AwsConfig = _fd(AwsConfig, "AWS access: region and endpoint (credentials come from the environment).")
    emr: EmrConfig = _fd(EmrConfig, "Running on AWS EMR: the cluster definition and how steps are followed.")
    refresh: RefreshConfig = _fd(RefreshConfig, "The refresh-retrain job: challengers and the promotion rule.")
    # Where each leaf value came from ("default", "configs/x.yaml line 4", "--set"): for messages.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def source_of(self, key: str) -> str:
        """Where the value of a dotted key came from, e.g. ``'configs/x.yaml line 4'``."""
        return self.sources.get(key, "default")


SECTIONS = ("input", "sampling", "features", "training", "evaluation", "spark", "aws", "emr", "refresh")
