"""Training parameters and the checks made before any Spark work."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_pipeline.config import build_config, parse_set_option
from ctr_pipeline.errors import ConfigError
from training.core import VALIDATION_FLAG, check_workers, cuda_problem, estimator_params


def params(*sets):
    return estimator_params(build_config([parse_set_option(s) for s in sets]))


def test_sparse_input_settings_and_config_values():
    p = params("training.max_depth=4", "training.params={max_delta_step: 1}")
    assert p["enable_sparse_data_optim"] is True and p["missing"] == 0.0
    assert p["max_depth"] == 4 and p["max_delta_step"] == 1 and p["tree_method"] == "hist"


def test_early_stopping_is_on_by_default_and_off_without_a_validation_split():
    from training.core import stopping_rounds

    on = build_config([])
    assert stopping_rounds(on) == 20 and params()["validation_indicator_col"] == VALIDATION_FLAG
    off = build_config([parse_set_option("sampling.validation=0"), parse_set_option("sampling.train=0.9")])
    assert stopping_rounds(off) is None and "validation_indicator_col" not in estimator_params(off)
    assert "validation_indicator_col" not in params("training.early_stopping_rounds=null")


def test_the_default_search_space_is_the_recommended_one_and_a_layer_replaces_it_whole():
    from ctr_pipeline.config import Layer
    from training.search import RECOMMENDED_SPACE

    assert dict(build_config([]).training.search_space) == RECOMMENDED_SPACE
    assert build_config([]).training.search_budget == 0.25
    assert dict(build_config([parse_set_option("training.search_space={}")]).training.search_space) == {}
    narrow = build_config([Layer("c.yaml", {"training": {"search_space": {"max_depth": [4, 8]}}})])
    assert dict(narrow.training.search_space) == {"max_depth": [4, 8]}
    mine = build_config([Layer("recorded", {"training": {"search_space": {"max_depth": [2, 3]}}}),
                         parse_set_option("training.search_space={learning_rate: [0.1, 0.2]}")])
    assert dict(mine.training.search_space) == {"learning_rate": [0.1, 0.2]}      # not merged key by key
    assert dict(build_config([parse_set_option("features.columns={I1: log1p}"),
                              parse_set_option("features.columns={C3: hash}")]).features.columns) == \
        {"I1": "log1p", "C3": "hash"}                                              # other mappings still merge


def test_gpu_hist_is_hist_on_cuda():
    p = params("training.tree_method=gpu_hist")
    assert (p["tree_method"], p["device"]) == ("hist", "cuda")


def test_early_stopping_uses_validation_indicator_and_the_pipeline_rule():
    p = params("training.early_stopping_rounds=5")
    # patience is the callback's (on the whole history, so resume keeps it), not XGBoost's EarlyStopping
    assert "early_stopping_rounds" not in p and p["validation_indicator_col"] == VALIDATION_FLAG


def test_booster_parameters_checked_on_the_driver():
    from training.core import booster_problem

    assert booster_problem(params("training.params={max_delta_step: 1, scale_pos_weight: 9, subsample: 0.8, "
                                  "colsample_bytree: 0.5, reg_lambda: 2, alpha: 0.1, seed: 3}")) is None
    assert booster_problem(params("training.tree_method=hist", "training.params={max_bin: 64, "
                                  "grow_policy: lossguide, max_leaves: 8, force_repartition: true}")) is None
    assert 'XGBoost does not use "max_delta_stp"' in booster_problem(params("training.params={max_delta_stp: 1}"))
    assert booster_problem(params("training.params={subsample: 2}")) == (
        "XGBoost refuses them: value 2 for Parameter subsample exceed bound [0,1]")


def test_spark_estimator_arguments_are_not_taken_for_booster_parameters():
    from xgboost.spark import core as spark_core   # private list, read only to catch drift on upgrades

    from training.core import SPARK_ESTIMATOR_ARGS

    names = {spark_core._inverse_pyspark_param_alias_map.get(n, n) for n in spark_core._pyspark_specific_params}
    assert names - {"arbitrary_params_dict"} <= SPARK_ESTIMATOR_ARGS


def test_workers_checked_against_slots():
    check_workers(2, 2, "x")
    with pytest.raises(ConfigError, match=r"x: training.num_workers is 3 but Spark has only 2 task slot"):
        check_workers(3, 2, "x")


def test_num_workers_auto_takes_every_slot_and_numbers_are_checked():
    from training.core import workers_for

    assert params()["num_workers"] == "auto" and workers_for("auto", 16, "x") == 16
    assert params("training.num_workers=2")["num_workers"] == 2 and workers_for(2, 16, "x") == 2
    with pytest.raises(ConfigError, match=r"x: training.num_workers is 3 but Spark has only 2 task slot"):
        workers_for(3, 2, "x")
    with pytest.raises(ConfigError, match=r"training.num_workers: expected a number or auto, got 'many'"):
        params("training.num_workers=many")
    with pytest.raises(ConfigError, match=r"training.num_workers: must be >= 1, got 0"):
        params("training.num_workers=0")


def test_cuda_problems_are_explained():
    assert cuda_problem("cpu", False, 0) is None
    assert "no CUDA support" in cuda_problem("cuda", False, 0)
    assert "no GPU is visible" in cuda_problem("cuda", True, 0)
    assert cuda_problem("cuda", True, 1) is None


# ---------------------------------------------------------------------------------------------- stopping, checkpoints

from training.core import (backoff_seconds, best_round, checkpoint_name, cost_aware_stop,  # noqa: E402
                           merged_history, newest_checkpoint, patience_stop)


def test_cost_aware_rule_on_a_crafted_history():
    steep = [1.0, 0.8, 0.6, 0.5, 0.45]
    assert not cost_aware_stop(steep, window=2, min_gain=0.1)          # 0.6 -> 0.45: 25% gain
    flat = [1.0, 0.5, 0.499, 0.4985, 0.498]
    assert cost_aware_stop(flat, window=2, min_gain=0.01)              # 0.499 -> 0.498: 0.2% < 1%
    assert not cost_aware_stop(flat[:2], window=2, min_gain=0.01)      # not enough rounds yet
    assert cost_aware_stop([0.5, 0.6, 0.7], window=2, min_gain=0.0)    # getting worse
    assert best_round([0.5, 0.4, 0.4, 0.45]) == 1 and best_round([]) is None


def xgboost_stop_round(history, patience):
    """The round (1-based) where XGBoost's own EarlyStopping callback stops on this validation history."""
    from xgboost.callback import EarlyStopping

    class Model:
        def num_boosted_rounds(self):
            return 0

        def set_attr(self, **_):
            pass

    rule, log = EarlyStopping(rounds=patience), {"validation": {"logloss": []}}
    rule.before_training(Model())
    for epoch, value in enumerate(history):
        log["validation"]["logloss"].append(value)
        if rule.after_iteration(Model(), epoch, log):
            return epoch + 1
    return None


def pipeline_stop_round(history, patience):
    return next((i for i in range(1, len(history) + 1) if patience_stop(history[:i], patience)), None)


@settings(deadline=None)   # the first example imports xgboost
@given(st.lists(st.sampled_from([0.5, 0.45, 0.4, 0.41, 0.39, 0.4]), min_size=1, max_size=30),
       st.integers(min_value=1, max_value=6))
def test_patience_rule_stops_where_xgboost_early_stopping_does(history, patience):
    assert pipeline_stop_round(history, patience) == xgboost_stop_round(history, patience)


def test_patience_on_a_crafted_history():
    h = [0.5, 0.4, 0.45, 0.4, 0.41]                                   # best at round 2; a tie is no gain
    assert not patience_stop(h[:4], 3) and patience_stop(h, 3) and not patience_stop([], 1)


def test_patience_and_gain_need_validation():
    with pytest.raises(ConfigError, match="training.min_relative_gain needs a validation split"):
        params("sampling.validation=0", "training.min_relative_gain=0.001")
    p = params("training.min_relative_gain=0.001")
    assert p["validation_indicator_col"] == VALIDATION_FLAG and "early_stopping_rounds" not in p
    with pytest.raises(ConfigError, match=r"training.params: callbacks, xgb_model are set by the pipeline"):
        params("training.params={callbacks: 1, xgb_model: x}")


def test_checkpoint_names_newest_and_backoff():
    names = [checkpoint_name(10), checkpoint_name(120), ".tmp-abc", checkpoint_name(30), "round-x.ubj"]
    assert checkpoint_name(7) == "round-000007.ubj"
    assert newest_checkpoint(names) == (120, "round-000120.ubj") and newest_checkpoint([]) is None
    assert [backoff_seconds(a, 5.0) for a in (1, 2, 3)] == [5.0, 10.0, 20.0]
    h = merged_history({"validation": {"logloss": [0.3, 0.2]}}, {"validation": {"logloss": [0.1]},
                                                                 "training": {"logloss": [0.05]}})
    assert h == {"validation": {"logloss": [0.3, 0.2, 0.1]}, "training": {"logloss": [0.05]}}


def test_local_checkpoint_store_is_atomic_and_clearable(tmp_path):
    from training.checkpoints import CheckpointStore

    store = CheckpointStore(str(tmp_path / "ck"))
    assert store.newest() is None and store.names() == []
    store.put(10, b"ten")
    store.put(20, b"twenty")
    (tmp_path / "ck" / ".tmp-leftover").write_bytes(b"half")        # a writer killed mid-write
    assert store.newest() == (20, b"twenty")
    store.clear()
    assert store.names() == []
    with pytest.raises(ValueError, match="use a local path or s3://"):
        CheckpointStore("hdfs://nn/x")


def test_s3_checkpoint_store_with_moto(aws):
    import pickle

    from ctr_pipeline.aws import client
    from training.checkpoints import CheckpointStore

    client("s3", aws).create_bucket(Bucket="ckpt")
    store = pickle.loads(pickle.dumps(CheckpointStore("s3://ckpt/runs/r1/train")))  # as a Spark task gets it
    store.put(5, b"five")
    store.put(15, b"fifteen")
    assert store.names() == ["round-000005.ubj", "round-000015.ubj"]
    assert store.newest() == (15, b"fifteen")
    store.clear()
    assert store.newest() is None


# ---------------------------------------------------------------------------------------------- search

from training.search import candidate_id, candidates, check_space, cv_table  # noqa: E402


def test_grid_and_seeded_random_candidates():
    space = {"max_depth": [3, 6], "learning_rate": [0.1, 0.3]}
    grid = candidates(space, "grid", 0, 0)
    assert grid == [{"learning_rate": 0.1, "max_depth": 3}, {"learning_rate": 0.1, "max_depth": 6},
                    {"learning_rate": 0.3, "max_depth": 3}, {"learning_rate": 0.3, "max_depth": 6}]
    ranged = {"max_depth": {"min": 2, "max": 10}, "learning_rate": {"min": 0.01, "max": 0.3, "log": True}}
    a, b = candidates(ranged, "random", 5, 7), candidates(ranged, "random", 5, 7)
    assert a == b and a != candidates(ranged, "random", 5, 8) and len(a) == 5
    assert all(isinstance(c["max_depth"], int) and 2 <= c["max_depth"] <= 10 for c in a)
    assert all(0.01 <= c["learning_rate"] <= 0.3 for c in a)
    assert candidate_id({"a": 1, "b": 2}) == candidate_id({"b": 2, "a": 1})


def test_random_search_over_lists_draws_distinct_grid_points():
    from training.search import RECOMMENDED_SPACE as DEFAULT_SEARCH_SPACE

    drawn = candidates(DEFAULT_SEARCH_SPACE, "random", 6, 0)
    assert drawn == candidates(dict(sorted(DEFAULT_SEARCH_SPACE.items(), reverse=True)), "random", 6, 0)
    assert len({json.dumps(c, sort_keys=True) for c in drawn}) == 6
    assert all(c[k] in DEFAULT_SEARCH_SPACE[k] for c in drawn for k in DEFAULT_SEARCH_SPACE)
    assert drawn == candidates(DEFAULT_SEARCH_SPACE, "random", 6, 0) != candidates(DEFAULT_SEARCH_SPACE, "random", 6, 1)
    small = {"max_depth": [1, 5]}
    assert candidates(small, "random", 6, 0) == candidates(small, "grid", 0, 0)   # the whole grid, once each


def test_the_configured_values_are_always_the_first_candidate():
    from training.search import with_incumbent

    space = {"max_depth": [4, 6], "reg_lambda": [1, 10], "max_delta_step": [0, 1]}
    base = {"max_depth": 6, "learning_rate": 0.1, "lambda": 5}                 # lambda: training.params' alias
    drawn = [{"max_depth": 4, "reg_lambda": 10, "max_delta_step": 1}]
    assert with_incumbent(drawn, space, base) == [{"max_delta_step": 0.0, "max_depth": 6, "reg_lambda": 5}, *drawn]
    same = [{"max_depth": 6, "reg_lambda": 5, "max_delta_step": 0}, *drawn]
    assert with_incumbent(same, space, base) == [{"max_delta_step": 0.0, "max_depth": 6, "reg_lambda": 5}, *drawn]
    assert with_incumbent(drawn, {"max_depth": [4]}, {}) == drawn               # unknown configured value: none


def test_fold_result_scores_the_held_fold_at_the_best_round():
    """On rows with a signal in one column: MXE and AUC of the held fold match the booster's own
    predictions at the kept round; early stopping keeps fewer trees than a high learning rate allows."""
    import numpy as np
    import xgboost as xgb
    from scipy.sparse import csr_matrix

    from training.search import fold_result

    rng = np.random.default_rng(3)
    n = 3000
    x = csr_matrix(rng.integers(0, 2, size=(n, 20)).astype(np.float32))
    y = (rng.random(n) < np.where(x[:, 0].toarray().ravel() > 0, 0.4, 0.1)).astype(np.float32)
    folds = rng.integers(0, 3, size=n)
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6, "learning_rate": 0.9}
    got = fold_result(x, y, None, folds, 1, params, 60, 5, 1)
    held = folds == 1
    assert got["rows"] == int(held.sum()) and 1 <= got["trees"] < 60
    booster = xgb.train({**params, "nthread": 1}, xgb.DMatrix(x[~held], label=y[~held], missing=0.0), got["trees"])
    p = np.clip(booster.predict(xgb.DMatrix(x[held], missing=0.0)), 1e-15, 1 - 1e-15)
    mxe = float(-(y[held] * np.log(p) + (1 - y[held]) * np.log1p(-p)).mean())
    assert got["mxe"] == pytest.approx(mxe, rel=1e-5)
    full = fold_result(x, y, None, folds, 1, params, 60, None, 1)
    assert full["trees"] == 60 and full["mxe"] > got["mxe"]                 # no stopping: overfit at eta 0.9


@pytest.mark.parametrize("weighted", [False, True])
def test_leaf_curve_is_xgboosts_own_curve_and_stops_at_its_best_round(weighted):
    """The per-round held-out log loss from the leaves equals XGBoost's evaluation of the same rounds, and
    the rule stops where XGBoost's early stopping does, whichever round the look falls on."""
    import numpy as np
    import xgboost as xgb
    from scipy.sparse import csr_matrix

    from training.heldout import LeafCurve

    rng = np.random.default_rng(5)
    n = 4000
    x = csr_matrix(rng.integers(0, 3, size=(n, 30)).astype(np.float32))
    y = (rng.random(n) < np.where(x[:, 0].toarray().ravel() > 0, 0.35, 0.1)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, size=n).astype(np.float32) if weighted else None
    fit, held = np.arange(n) < 3000, np.arange(n) >= 3000

    def matrix(rows):
        return xgb.DMatrix(x[rows], label=y[rows], weight=None if w is None else w[rows], missing=0.0)

    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 5, "learning_rate": 0.7,
              "nthread": 1, "eval_metric": "logloss"}
    curves: dict = {}
    theirs = xgb.train(params, matrix(fit), 80, evals=[(matrix(held), "h")], early_stopping_rounds=6,
                       evals_result=curves, verbose_eval=False)
    for every in (1, 4, 10):
        curve = LeafCurve(x[held], y[held], None if w is None else w[held], 6, every=every)
        ours = xgb.train(params, matrix(fit), 80, callbacks=[curve], verbose_eval=False)
        assert curve.best == theirs.best_iteration < curve.stopped < 79
        assert ours.num_boosted_rounds() - 1 - curve.stopped < every          # at most every - 1 rounds past it
        assert curve.losses == pytest.approx(curves["h"]["logloss"][:curve.stopped + 1], rel=1e-5)
    never = LeafCurve(x[held], y[held], None if w is None else w[held], None, every=7)
    xgb.train(params, matrix(fit), 30, callbacks=[never], verbose_eval=False)
    assert len(never.losses) == 30 and never.stopped is None                    # the rounds after the last look too


def test_fold_result_without_leaves_uses_xgboosts_evaluation():
    """A booster whose margins the leaves do not give (dart) is stopped by XGBoost's own evaluation."""
    import numpy as np
    from scipy.sparse import csr_matrix

    from training.heldout import supported
    from training.search import fold_result

    assert supported({"objective": "binary:logistic"}) and not supported({"booster": "dart"})
    assert not supported({"num_parallel_tree": 4}) and not supported({"objective": "reg:squarederror"})
    rng = np.random.default_rng(4)
    x = csr_matrix(rng.integers(0, 2, size=(1500, 10)).astype(np.float32))
    y = (rng.random(1500) < np.where(x[:, 0].toarray().ravel() > 0, 0.4, 0.1)).astype(np.float32)
    folds = rng.integers(0, 3, size=1500)
    params = {"objective": "binary:logistic", "booster": "dart", "max_depth": 3, "learning_rate": 0.5}
    got = fold_result(x, y, None, folds, 0, params, 20, 3, 1)
    assert 1 <= got["trees"] <= 20 and 0 < got["mxe"] < 0.7 and 0.5 < got["auc"] <= 1


@pytest.mark.parametrize("space, method, message", [
    ({"depth": [3]}, "grid", r"'depth' cannot be searched"),
    ({"max_depth": {"min": 2, "max": 5}}, "grid", r"expected a list of numbers, got"),
    ({"learning_rate": {"min": 0, "max": 1, "log": True}}, "random", r"a log range needs min > 0"),
])
def test_search_space_errors(space, method, message):
    with pytest.raises(ConfigError, match=message):
        check_space(space, method, "c.yaml line 3")


def test_cv_table_mean_std_best_first():
    rows = [{"candidate": "a", "fold": 0, "params": {"max_depth": 3}, "mxe": 0.30, "auc": 0.70},
            {"candidate": "a", "fold": 1, "params": {"max_depth": 3}, "mxe": 0.32, "auc": 0.72},
            {"candidate": "b", "fold": 0, "params": {"max_depth": 6}, "mxe": 0.20, "auc": 0.80},
            {"candidate": "b", "fold": 1, "params": {"max_depth": 6}, "mxe": 0.24, "auc": 0.78}]
    t = cv_table(rows)
    assert t["candidate"].tolist() == ["b", "a"] and t["folds"].tolist() == [2, 2]
    assert t.loc[0, "mxe_mean"] == pytest.approx(0.22) and t.loc[0, "mxe_std"] == pytest.approx(0.02828427, abs=1e-7)
    assert t.loc[1, "auc_mean"] == pytest.approx(0.71) and json.loads(t.loc[0, "params"]) == {"max_depth": 6}


def test_columns_no_tree_can_split_on_are_pruned_and_the_fold_result_is_unchanged():
    import numpy as np
    from scipy.sparse import csr_matrix, hstack

    from training.search import fold_result, splittable_columns

    rng = np.random.default_rng(5)
    n = 4000
    dense = csr_matrix(rng.integers(0, 2, size=(n, 6)).astype(np.float32))
    rare = np.zeros((n, 40), dtype=np.float32)
    for j in range(40):                                  # column j is present in j % 8 rows: 0..7
        rare[rng.choice(n, j % 8, replace=False), j] = 1.0
    x = hstack([dense, csr_matrix(rare)], format="csr")
    y = (rng.random(n) < np.where(x[:, 0].toarray().ravel() > 0, 0.3, 0.1)).astype(np.float32)
    base = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 8, "learning_rate": 0.5}
    keep = splittable_columns(x, None, [base, {**base, "min_child_weight": 2}])
    counts = np.diff(x.tocsc().indptr)
    assert keep.tolist() == [j for j in range(x.shape[1]) if counts[j] >= 4]     # 0.25 * rows >= 1
    assert len(splittable_columns(x, None, [{**base, "min_child_weight": 1.5}])) < len(keep)
    assert len(splittable_columns(x, np.full(n, 4.0), [base])) == int((counts > 0).sum())   # all present ones
    assert len(splittable_columns(x, None, [{**base, "scale_pos_weight": 2.0}])) > len(keep)
    for unsafe in ({"colsample_bytree": 0.5}, {"objective": "binary:hinge"}, {"min_child_weight": 0},
                   {"interaction_constraints": "[[0, 1]]"}):
        assert splittable_columns(x, None, [base, {**base, **unsafe}]) is None
    folds = rng.integers(0, 3, size=n)
    full = fold_result(x, y, None, folds, 0, base, 30, 5, 1)
    pruned = fold_result(x[:, keep], y, None, folds, 0, base, 30, 5, 1)
    assert len(keep) < x.shape[1] - 10
    assert {k: v for k, v in pruned.items() if k != "seconds"} == {k: v for k, v in full.items() if k != "seconds"}


def _table(folds_by_params):
    from training.search import candidate_id, cv_table

    return cv_table([{"candidate": candidate_id(p), "fold": f, "params": p, "mxe": m, "auc": 0.7}
                     for p, mxes in folds_by_params for f, m in enumerate(mxes)])


def test_the_configured_values_stay_unless_the_best_beats_them_by_more_than_the_folds_disagree():
    from training.search import choose

    mine = {"max_depth": 6}
    steady = _table([(mine, [0.300, 0.310, 0.320]), ({"max_depth": 8}, [0.295, 0.305, 0.315])])
    params, why = choose(steady, mine)           # better by 0.005 on every fold: standard error 0
    assert params == {"max_depth": 8} and "more than the paired folds' standard error 0.00000" in why
    noisy = _table([(mine, [0.300, 0.310, 0.320]), ({"max_depth": 8}, [0.280, 0.315, 0.325])])
    params, why = choose(noisy, mine)            # better by 0.0033 on average, standard error 0.0083
    assert params == mine and why.startswith("the configured values kept") and '{"max_depth": 8}' in why
    params, why = choose(_table([(mine, [0.29, 0.30, 0.31]), ({"max_depth": 8}, [0.30, 0.31, 0.32])]), mine)
    assert params == mine and why == "the configured values had the lowest CV MXE"
    assert choose(noisy, None)[0] == {"max_depth": 8} and choose(noisy, {"max_depth": 4})[0] == {"max_depth": 8}


def test_the_budget_pays_for_candidates_by_the_rows_they_train_on():
    from training.search import affordable, search_candidates, search_line, skipped_search

    assert affordable(0.5, 800_000, 3, 50_000) == 4           # 0.5 x 800k rows / (2 folds x 50k rows)
    assert affordable(0.5, 80_000, 3, 50_000) == 0            # the demo's 80k: no search
    assert affordable(0.5, 400_000, 3, 50_000) == 2 and affordable(0.5, 399_999, 3, 50_000) == 1
    assert affordable(0.5, 10_000, 3, 50_000) == 0 and affordable(2.0, 10_000, 3, 50_000) == 1   # sample: all
    assert affordable(1.0, 1_000_000, 3, 0) == 0              # distributed on all of train: 2x the final model
    assert affordable(None, 10, 3, 50_000) is None
    assert affordable(0.25, 800_000, 3, 50_000) == 2 and affordable(0.25, 2_400_000, 3, 50_000) == 6   # default
    t = build_config([]).training
    every = search_candidates(t, {"max_depth": 6, "learning_rate": 0.1})
    assert len(every) == 6 and search_candidates(t, {"max_depth": 6, "learning_rate": 0.1}, 4) == every[:4]
    line = search_line(skipped_search(t, 80_000, 0, 6))
    assert line == ("search: skipped: training.search_budget 0.25 x 80,000 train rows pays for 0 of 6 candidates at "
                    "2 x 50,000 rows each; a search needs 2 (null: no limit)")


def test_engine_auto_trains_in_the_driver_only_on_a_local_master_on_cpu_with_workers_auto():
    from training.core import engine_for

    assert engine_for("auto", "local[2]", "cpu", "auto") == "driver"
    assert engine_for("auto", "local[*]", "cpu", 2) == "spark"                 # workers asked for
    assert engine_for("auto", "local[2]", "cuda", "auto") == "spark"
    assert engine_for("auto", "spark://127.0.0.1:7077", "cpu", "auto") == "spark"
    assert engine_for("auto", "yarn", "cpu", "auto") == "spark"
    assert engine_for("driver", "yarn", "cpu", 4) == "driver" and engine_for("spark", "local", "cpu", "auto") == "spark"
