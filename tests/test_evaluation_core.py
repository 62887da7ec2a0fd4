"""Metric reference implementations against scikit-learn and hand computations."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, roc_auc_score

from ctr_pipeline.errors import InputDataError
from evaluation.core import auc, check_two_classes, mxe


def test_mxe_by_hand():
    assert mxe([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2, abs=1e-12)


def test_auc_by_hand_with_ties():
    # positives 0.8, 0.5 ; negatives 0.5, 0.1 -> pairs: (0.8>0.5)1 (0.8>0.1)1 (0.5=0.5)0.5 (0.5>0.1)1
    assert auc([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.1]) == pytest.approx(3.5 / 4, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), min_size=2, max_size=200))
def test_auc_and_mxe_match_sklearn(pairs):
    y = np.array([p[0] for p in pairs], dtype=int)
    if y.min() == y.max():
        return
    scores = np.array([p[1] for p in pairs]) / 20.0          # many ties, values 0 and 1 included
    assert auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-9)
    probs = np.clip(scores, 1e-15, 1 - 1e-15)
    assert mxe(y, scores) == pytest.approx(log_loss(y, probs, labels=[0, 1]), abs=1e-9)


def test_one_class_is_a_clear_error():
    with pytest.raises(InputDataError, match="only one class"):
        auc([1, 1], [0.2, 0.3])
    with pytest.raises(InputDataError, match="split test has only one class"):
        check_two_classes("test", 10, 0)
    with pytest.raises(InputDataError, match="split test is empty"):
        check_two_classes("test", 0, 0)


# ---------------------------------------------------------------------------------------------- weighted, tables

from sklearn.metrics import average_precision_score  # noqa: E402

from evaluation.core import (ScoreTable, binned_auc, entropy, importance_by_column, importance_table,  # noqa: E402
                             normalized_entropy, percentile_interval, poisson_weights, recalibrate, weighted_mxe)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10), st.integers(1, 5)), min_size=2, max_size=200))
def test_score_table_auc_and_ap_match_sklearn_with_ties_and_weights(rows):
    y = np.array([r[0] for r in rows], dtype=int)
    if y.min() == y.max():
        return
    s = np.array([r[1] for r in rows]) / 10.0
    w = np.array([r[2] for r in rows], dtype=float)
    t = ScoreTable.from_arrays(y, s, w)
    assert t.roc_auc() == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-9)
    assert t.average_precision() == pytest.approx(average_precision_score(y, s, sample_weight=w), abs=1e-9)
    unweighted = ScoreTable.from_arrays(y, s)
    assert unweighted.roc_auc() == pytest.approx(auc(y, s), abs=1e-9)
    p = np.clip(s, 1e-15, 1 - 1e-15)
    assert weighted_mxe(y, s, w) == pytest.approx(log_loss(y, p, sample_weight=w, labels=[0, 1]), abs=1e-9)
    # histograms per distinct score are exact bins
    assert binned_auc(t.pos[None, :], t.neg[None, :])[0] == pytest.approx(t.roc_auc(), abs=1e-12)


def test_score_table_by_hand_and_one_class():
    t = ScoreTable.from_arrays([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.1])
    assert t.roc_auc() == pytest.approx(3.5 / 4) and t.tie_bound() == 0.0
    rounded = ScoreTable(t.score, t.pos, t.neg, quantized=True)
    assert rounded.tie_bound() == pytest.approx(1 * 1 / (2 * 2 * 2))    # the one tied (pos, neg) pair
    # AP: thresholds 0.8 (P=1, R=.5), 0.5 (P=2/3, R=1) -> .5*1 + .5*2/3
    assert t.average_precision() == pytest.approx(0.5 + 0.5 * 2 / 3)
    fpr, tpr = t.roc_points()
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
    with pytest.raises(InputDataError, match="only one class"):
        ScoreTable.from_arrays([0, 0], [0.1, 0.2]).roc_auc()


def test_normalized_entropy_and_recalibration_by_hand():
    assert entropy(0.5) == pytest.approx(math.log(2))
    assert normalized_entropy(math.log(2) / 2, 0.5) == pytest.approx(0.5)
    with pytest.raises(InputDataError, match="normalized entropy is undefined"):
        normalized_entropy(0.1, 0.0)
    assert recalibrate(np.array([0.5]), 0.1)[0] == pytest.approx(0.5 / (0.5 + 0.5 / 0.1))
    # A model that is calibrated on data with negatives kept at rate w predicts odds / w: undo it.
    true_p = np.array([0.01, 0.05, 0.2])
    w = 0.05
    trained = (true_p / w) / (true_p / w + (1 - true_p))
    np.testing.assert_allclose(recalibrate(trained, w), true_p, rtol=1e-12)


def test_poisson_bootstrap_weights_reproducible_and_paired():
    ids = np.arange(20_000, dtype=np.int64)
    a = poisson_weights(ids, seed=3, replicates=4)
    assert (a == poisson_weights(ids, seed=3, replicates=4)).all()
    assert (poisson_weights(ids[::-1], 3, 4)[:, ::-1] == a).all()        # a function of row_id, not position
    assert not (poisson_weights(ids, 4, 4) == a).all()
    assert abs(a.mean() - 1.0) < 0.02 and abs(a.var() - 1.0) < 0.05  # Poisson(1)
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))


def test_importances_named_and_summed_per_raw_column():
    fmap = pd.DataFrame({"index": [0, 1, 2, 3], "name": ["I1", "C1=a", "C1=b", "OOV(C1)"],
                         "group": ["numeric", "vocab", "vocab", "vocab"], "source": ["I1", "C1", "C1", "C1"]})
    scores = {"gain": {"f0": 2.0, "f1": 1.0, "f3": 4.0}, "total_gain": {"f0": 10.0, "f1": 3.0, "f3": 4.0},
              "weight": {"f0": 5, "f1": 3, "f3": 1}, "cover": {"f0": 1.0, "f1": 2.0, "f3": 3.0},
              "total_cover": {"f0": 5.0, "f1": 6.0, "f3": 3.0}}
    table = importance_table(scores, fmap)
    assert table["name"].tolist() == ["I1", "OOV(C1)", "C1=a"]
    by_col = importance_by_column(table)
    assert by_col["source"].tolist() == ["I1", "C1"]
    c1 = by_col.set_index("source").loc["C1"]
    assert (c1["total_gain"], c1["weight"], c1["gain"], c1["cover"]) == (7.0, 4.0, 7.0 / 4, 9.0 / 4)
    assert by_col["share"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("values, message", [
    ({"baselines": ["logistic"]}, r"evaluation.baselines: 'logistic' is not one of logistic_regression, gbt"),
    ({"segment_by": "nope"}, r"evaluation.segment_by: 'nope' is not a declared input column"),
    ({"bootstrap": -1}, r"evaluation.bootstrap: must be >= 0"),
])
def test_evaluation_config_errors(values, message):
    from ctr_pipeline.config import Layer, build_config
    from ctr_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        build_config([Layer("e.yaml", {"evaluation": values})])
    assert build_config([Layer("e.yaml", {"evaluation": {"segment_by": "C9", "baselines": ["gbt"]}})])


def test_compare_table_and_missing_run(tmp_path):
    import json

    from ctr_pipeline.errors import UserError
    from evaluation.compare import comparison_table, markdown

    for name, mxe_value in (("a", 0.2), ("b", 0.19)):
        (tmp_path / name / "evaluation").mkdir(parents=True)
        (tmp_path / name / "evaluation" / "metrics.json").write_text(json.dumps({
            "test": {"rows": 10, "mxe": mxe_value, "ne": 0.9, "auc": 0.7, "pr_auc": 0.1, "calibration": 1.0},
            "baselines": {"logistic_regression": {"test": {"rows": 10, "mxe": 0.25, "ne": 1.0, "auc": 0.6,
                                                           "pr_auc": 0.05, "calibration": 1.1}}}}))
    table = comparison_table([tmp_path / "a", tmp_path / "b"])
    assert table["model"].tolist() == ["XGBoost (this run)", "LogisticRegression"] * 2
    assert table["mxe_vs_first"].tolist() == pytest.approx([0.0, 0.0, -0.05, 0.0])
    assert "| -5.00% |" in markdown(table)
    with pytest.raises(UserError, match="no evaluation/metrics.json"):
        comparison_table([tmp_path / "c"])


def test_summary_says_plainly_whether_xgboost_beats_each_baseline_and_what_validation_prefers():
    from evaluation.report import summary_lines

    def comparison(lo, hi):
        return {"relative_mxe_improvement": (lo + hi) / 2, "auc_difference": 0.01,
                "bootstrap": {"replicates": 200, "relative_mxe_improvement": {"interval": [lo, hi]},
                              "auc_difference": {"interval": [0.0, 0.02]}}}

    split = {"rows": 100, "positives": 5, "base_rate": 0.05, "ne": 0.9, "auc": 0.7, "calibration": 1.0}
    metrics = {"splits": {"test": {**split, "mxe": 0.2}, "validation": {**split, "mxe": 0.21}},
               "baselines": {"logistic_regression": {"test": {**split, "mxe": 0.2},
                                                     "validation": {**split, "mxe": 0.205}},
                             "gbt": {"test": {**split, "mxe": 0.3}}},
               "comparison": {"test": {"logistic_regression": comparison(-0.002, 0.003),
                                       "gbt": comparison(0.01, 0.05)},
                              "validation": {"logistic_regression": comparison(-0.05, -0.01)}}}
    lines = summary_lines(metrics)
    said = {line.split(":")[0] + ":" + line.split(":")[1]: line for line in lines if " vs " in line}
    assert said["test: XGBoost vs logistic_regression"].endswith(
        ": XGBoost does not beat logistic_regression significantly (the interval includes 0)")
    assert said["test: XGBoost vs gbt"].endswith(": XGBoost is significantly better than gbt")
    assert said["validation: XGBoost vs logistic_regression"].endswith(
        ": logistic_regression is significantly better than XGBoost")
    assert lines[-1] == ("validation prefers LogisticRegression: MXE 0.20500 (against XGBoost (this run) "
                         "0.21000)")
    del metrics["splits"]["validation"]
    assert not [line for line in summary_lines(metrics) if line.startswith("validation prefers")]


def test_a_shipped_gbdt_lr_model_is_named_as_such_and_compared_with_its_own_trees():
    from evaluation.report import markdown_summary, model_notes, summary_lines

    split = {"rows": 100, "positives": 5, "base_rate": 0.05, "ne": 0.9, "auc": 0.7, "calibration": 1.0}
    metrics = {"model": "gbdt_lr", "splits": {"validation": {**split, "mxe": 0.2}},
               "baselines": {"trees": {"validation": {**split, "mxe": 0.19}}},
               "comparison": {"validation": {"trees": {
                   "relative_mxe_improvement": -0.05, "auc_difference": -0.01,
                   "bootstrap": {"replicates": 50, "relative_mxe_improvement": {"interval": [-0.08, -0.02]},
                                 "auc_difference": {"interval": [-0.02, 0.0]}}}}}}
    lines = summary_lines(metrics)
    assert lines[0].startswith("validation: AUC 0.7000") and lines[1].startswith(
        "validation [its trees alone (XGBoost)]: AUC 0.7000  MXE (log loss) 0.19000")
    assert lines[2].startswith("validation: gbdt_lr vs trees: MXE improvement -5.00%")
    assert lines[2].endswith(": trees is significantly better than gbdt_lr")
    assert lines[3] == "validation prefers its trees alone (XGBoost): MXE 0.19000 (against GBDT leaves + LR " \
                       "(this run) 0.20000)"
    assert "## gbdt_lr against the baselines" in markdown_summary("t", metrics, [])
    note = model_notes({"gbdt_lr": {"trees": 12, "share": 0.2, "columns": 1_500, "fit_rows": 800,
                                    "regParam": 0.01}})[0]
    assert note.startswith("Shipped model: GBDT leaves + LR (training.model: gbdt_lr). Its 12 trees trained on "
                           "train less a held-out 20% (training.gbdt_lr_share)")
    assert "fit on 800 of the held-out rows, its L2 strength 0.01" in note


def test_report_notes_say_what_was_searched_what_won_and_the_trees_kept():
    from evaluation.report import model_notes

    search = {"engine": "sampled", "rows": 50_000, "train_rows": 800_000, "candidates": 6, "method": "random",
              "folds": 3, "seconds": 21.4, "best": {"max_depth": 4, "min_child_weight": 20},
              "best_cv_mxe": 0.15123, "best_cv_mxe_std": 0.00211, "space": {"max_depth": [4, 6, 8]},
              "width": 93_005, "columns": 15_091, "why": "the configured values had the lowest CV MXE"}
    notes = model_notes({"search": search, "early_stopping_rounds": 20, "best_iteration": 63})
    assert notes[0] == ('Model selection: search: 6 candidates (random) x 3 folds on an exact sample of 50,000 of '
                        '800,000 train rows (15,091 of 93,005 columns splittable there) (21s); chose {"max_depth": 4, '
                        '"min_child_weight": 20}: CV MXE 0.15123 +- 0.00211 (the configured values had the lowest CV '
                        'MXE) (space {"max_depth": [4, 6, 8]}; training.search_space).')
    assert "keeps 64 trees" in notes[1] and "early_stopping_rounds 20" in notes[1]
    assert model_notes({"search": None, "early_stopping_rounds": None, "best_iteration": None}) == []
    distributed = model_notes({"search": {**search, "engine": "distributed"}})
    assert "folds on all of train (21s)" in distributed[0]
