"""The booster narrowed to the columns its trees split on predicts exactly what the original predicts."""
import numpy as np
import pytest


def wide_rows(rng, rows: int, width: int):
    from scipy.sparse import random as sparse_random

    x = sparse_random(rows, width, density=8 / width, format="csr", random_state=rng, dtype=np.float32)
    x.data = np.round(x.data * 4) + 1          # a few values, none zero
    return x


@pytest.mark.parametrize("names", [False, True])
def test_narrowed_booster_predicts_values_margins_and_leaves_exactly(names):
    import xgboost as xgb

    from ctr_pipeline.narrow import narrow

    rng = np.random.default_rng(11)
    width = 5000
    x = wide_rows(rng, 3000, width)
    y = (rng.random(3000) < 0.2 + 0.5 * (x[:, :50].sum(axis=1).A.ravel() > 0)).astype(np.float32)
    train = xgb.DMatrix(x, label=y, missing=0.0, feature_names=[f"f{i}" for i in range(width)] if names else None)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 1}, train, 20)
    small = narrow(booster)
    assert 0 < small.columns.size < 200 and np.all(np.diff(small.columns) > 0)
    fresh = wide_rows(rng, 700, width)
    full = xgb.DMatrix(fresh, missing=0.0, feature_names=[f"f{i}" for i in range(width)] if names else None)
    assert np.array_equal(small.predict(fresh), booster.predict(full))
    assert np.array_equal(small.predict(fresh, predict_type="margin"), booster.predict(full, output_margin=True))
    assert np.array_equal(small.booster.predict(small.matrix(fresh), pred_leaf=True), booster.predict(full, pred_leaf=True))
    leaves = booster.predict(full, pred_leaf=True).astype(int)
    base = booster.predict(full, output_margin=True) - sum(small.leaf_values[t][leaves[:, t]] for t in range(20))
    assert np.allclose(base, base[0], atol=1e-5)                  # leaf values add up to the margin
    if names:
        assert small.booster.feature_names == [f"f{i}" for i in small.columns]


def test_a_booster_of_leaves_only_keeps_one_column():
    import xgboost as xgb

    from ctr_pipeline.narrow import narrow

    x = wide_rows(np.random.default_rng(2), 200, 300)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "min_child_weight": 1e6},
                        xgb.DMatrix(x, label=np.r_[np.ones(50), np.zeros(150)], missing=0.0), 3)
    small = narrow(booster)
    assert small.columns.tolist() == [0]
    assert np.array_equal(small.predict(x), booster.inplace_predict(x, missing=0.0))
