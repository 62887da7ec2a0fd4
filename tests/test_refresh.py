"""The refresh updater computed by the pipeline equals single-process ``xgboost.train(process_type=update)``."""
import numpy as np
import pytest
import scipy.sparse as sp
import xgboost as xgb

from training.refresh import RefreshParams, Trees, refresh_local

TREES = 12
pytestmark = pytest.mark.filterwarnings("ignore:.*manually specified the .updater. parameter:UserWarning")


def make_data(n: int, shift: float, seed: int):
    """Sparse rows whose click odds depend on three columns; ``shift`` moves one effect (drift)."""
    rng = np.random.default_rng(seed)
    x = sp.random(n, 30, density=0.25, random_state=rng, format="csr")
    x.data = x.data + 0.01                       # stored entries are never 0 (absent = missing)
    col = lambda j: x[:, j].toarray().ravel()
    logit = -2.0 + 3.0 * col(0) - 2.0 * col(1) + shift * col(2)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    w = rng.uniform(0.5, 2.0, n)
    return x, y, w


CASES = {
    "defaults": ({"eta": 0.3}, False),
    "regularised": ({"eta": 0.2, "lambda": 2.0, "alpha": 0.5, "min_child_weight": 3.0, "max_delta_step": 0.4,
                     "scale_pos_weight": 2.0}, True),
}


def reference(case: str):
    """(old booster, new data, xgboost's own refresh of it on one process, refresh parameters)."""
    params, weighted = CASES[case]
    x, y, w = make_data(3_000, 0.0, 1)
    xn, yn, wn = make_data(2_000, 3.0, 2)
    base = {"objective": "binary:logistic", "max_depth": 4, "tree_method": "hist", **params}
    old = xgb.train(base, xgb.DMatrix(x, label=y, weight=w if weighted else None, missing=0.0), TREES)
    new = xgb.DMatrix(xn, label=yn, weight=wn if weighted else None, missing=0.0)
    theirs = xgb.train({**base, "process_type": "update", "updater": "refresh", "refresh_leaf": 1}, new, TREES,
                       xgb_model=old.copy())
    renamed = {"eta": "learning_rate", "lambda": "reg_lambda", "alpha": "reg_alpha"}
    rp = RefreshParams.from_training({renamed.get(k, k): v for k, v in params.items()})
    return old, (xn, yn, wn if weighted else np.ones(len(yn))), theirs, rp


def assert_same_trees(mine: Trees, theirs: Trees, atol: float = 1e-6) -> None:
    assert len(mine) == len(theirs) == TREES
    for t in range(TREES):
        a, b = mine.trees[t], theirs.trees[t]
        assert a["split_indices"] == b["split_indices"] and a["left_children"] == b["left_children"]
        np.testing.assert_allclose(a["split_conditions"], b["split_conditions"], atol=atol, err_msg=f"tree {t}")
        np.testing.assert_allclose(a["base_weights"], b["base_weights"], atol=atol, err_msg=f"tree {t}")
        np.testing.assert_allclose(a["sum_hessian"], b["sum_hessian"], rtol=1e-5, err_msg=f"tree {t}")


@pytest.mark.parametrize("case", list(CASES))
def test_refresh_core_equals_xgboost_with_sums_added_over_parts(case):
    old, (xn, yn, wn), theirs, rp = reference(case)
    leaves = old.predict(xgb.DMatrix(xn, missing=0.0), pred_leaf=True).astype(np.int64)
    parts = [slice(0, 700), slice(700, 1500), slice(1500, None)]    # three "workers"
    mine = refresh_local(Trees.from_json(old.save_raw("json")), leaves, yn, wn, rp, parts)
    assert_same_trees(mine, Trees.from_json(theirs.save_raw("json")))
    moved = np.abs(np.array(mine.trees[0]["split_conditions"]) - np.array(Trees.from_json(
        old.save_raw("json")).trees[0]["split_conditions"])).max()
    assert moved > 1e-3                          # the drift really changed the leaves


def test_refresh_leaf_off_keeps_leaf_values_and_refreshes_statistics():
    old, (xn, yn, wn), _, rp = reference("defaults")
    leaves = old.predict(xgb.DMatrix(xn, missing=0.0), pred_leaf=True).astype(np.int64)
    before = Trees.from_json(old.save_raw("json"))
    kept = refresh_local(Trees.from_json(old.save_raw("json")), leaves, yn, wn,
                         RefreshParams(**{**rp.__dict__, "refresh_leaf": False}))
    assert all(kept.trees[t]["split_conditions"] == before.trees[t]["split_conditions"] for t in range(TREES))
    assert kept.trees[0]["sum_hessian"] != before.trees[0]["sum_hessian"]


def test_only_binary_logistic_boosters_are_refreshed():
    x, y, _ = make_data(200, 0.0, 3)
    b = xgb.train({"objective": "reg:squarederror"}, xgb.DMatrix(x, label=y), 2)
    with pytest.raises(ValueError, match="binary:logistic"):
        Trees.from_json(b.save_raw("json"))


@pytest.mark.spark
def test_refresh_on_spark_with_several_workers_equals_single_process_xgboost(spark):
    import pandas as pd

    from features.spark_io import vector_struct
    from training.refresh_spark import refresh

    case = "regularised"         # every parameter of the rule in play: L1, L2, min_child_weight, max_delta_step
    old, (xn, yn, wn), theirs, rp = reference(case)
    frame = pd.DataFrame({"label": yn.astype(np.int32), "weight": wn,
                          "indices": [xn.indices[xn.indptr[i]:xn.indptr[i + 1]].tolist() for i in range(xn.shape[0])],
                          "values": [xn.data[xn.indptr[i]:xn.indptr[i + 1]].tolist() for i in range(xn.shape[0])]})
    df = (spark.createDataFrame(frame).repartition(4)
          .select("label", "weight", vector_struct(xn.shape[1]).alias("features")))
    assert df.rdd.getNumPartitions() == 4
    for attempt in range(2):            # the second run reuses the workers' cached margins of another refresh
        new, facts = refresh(spark, old, df, xn.shape[1], rp, weight_col="weight")
        assert facts["rows"] == 2_000 and facts["trees"] == TREES
        assert_same_trees(Trees.from_json(new.save_raw("json")), Trees.from_json(theirs.save_raw("json")))
        dn = xgb.DMatrix(xn, missing=0.0)
        np.testing.assert_allclose(new.predict(dn), theirs.predict(dn), atol=1e-6)


def test_trees_trained_on_base_margins_and_appended_equal_continued_training():
    x, y, w = make_data(3_000, 0.0, 4)
    params = {"objective": "binary:logistic", "max_depth": 3, "tree_method": "hist", "eta": 0.3}
    d = xgb.DMatrix(x, label=y, weight=w, missing=0.0)
    first = xgb.train(params, d, 5)
    margin = first.predict(d, output_margin=True)
    added = xgb.train(params, xgb.DMatrix(x, label=y, weight=w, missing=0.0, base_margin=margin), 4)
    merged = Trees.from_json(first.save_raw("json"))
    merged.extend(Trees.from_json(added.save_raw("json")))
    booster = xgb.Booster()
    booster.load_model(bytearray(merged.to_json()))
    continued = xgb.train(params, d, 4, xgb_model=first.copy())
    assert booster.num_boosted_rounds() == 9
    np.testing.assert_allclose(booster.predict(d), continued.predict(d), atol=1e-7)
