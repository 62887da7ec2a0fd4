"""GBDT leaves + logistic regression: the leaf one-hot transform, the held-out choice of the L2 strength,
and that the leaves carry what a linear model on the raw features cannot (an interaction)."""
import numpy as np
import pytest
from scipy.sparse import csr_matrix

from evaluation import gbdt_lr, logistic
from evaluation.core import mxe


def test_leaf_columns_are_one_hot_per_tree():
    x = gbdt_lr.leaf_columns(np.array([[3, 4], [5, 3]]), nodes=7)
    assert x.shape == (2, 14)
    assert x.toarray().tolist() == [[0, 0, 0, 1, 0, 0, 0] + [0, 0, 0, 0, 1, 0, 0],
                                    [0, 0, 0, 0, 0, 1, 0] + [0, 0, 0, 1, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"leaf ids must lie in \[0, 7\)"):
        gbdt_lr.leaf_columns(np.array([[7]]), nodes=7)


def test_the_rows_that_choose_the_penalty_do_not_depend_on_row_order():
    ids = np.arange(1000) * 7 + 3
    mask = gbdt_lr.select_mask(ids, seed=5)
    shuffled = np.random.default_rng(0).permutation(1000)
    assert (gbdt_lr.select_mask(ids[shuffled], seed=5) == mask[shuffled]).all()
    assert 150 < mask.sum() < 250 and (gbdt_lr.select_mask(ids, seed=6) != mask).any()


def xor_data(n, seed):
    """Clicks depend on an interaction (mostly a XOR b; a's marginal is informative, so a greedy tree finds
    it): no model additive in a and b on the log-odds fits it."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    p = np.select([(a == 1) & (b == 0), (a == 0) & (b == 1)], [0.4, 0.2], 0.02)
    y = (rng.random(n) < p).astype(np.float64)
    x = csr_matrix(np.column_stack([a + 1.0, b + 1.0, rng.random(n)]))   # values >= 1: no zero is "missing"
    return x, y


def test_leaves_give_the_linear_model_an_interaction_it_cannot_see_and_scoring_matches():
    import xgboost

    x_train, y_train = xor_data(4000, 1)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 2, "eta": 0.3},
                            xgboost.DMatrix(x_train, label=y_train, missing=0.0), num_boost_round=5)
    raw = bytes(booster.save_raw("ubj"))
    x_fit, y_fit = xor_data(4000, 2)                  # rows the trees did not see
    x_test, y_test = xor_data(4000, 3)
    ones = np.ones(len(y_fit))
    model, settings = gbdt_lr.fit(raw, x_fit, y_fit, ones, np.arange(len(y_fit)), (1e-4, 1e-2), seed=9,
                                  fit_linear=logistic.fit)
    assert settings["regParam"] in (1e-4, 1e-2) and settings["trees"] == 5
    assert set(settings["grid"]) == {"0.0001", "0.01"} and settings["nodes_per_tree"] <= 7
    plain = logistic.fit(x_fit, y_fit, ones, 1e-4)
    hybrid, linear = mxe(y_test, model.predict(x_test)), mxe(y_test, plain.predict(x_test))
    assert hybrid < linear * 0.9, (hybrid, linear)
    leaves = booster.predict(xgboost.DMatrix(x_test[:50], missing=0.0), pred_leaf=True)
    design = np.hstack([gbdt_lr.leaf_columns(leaves, model.nodes).toarray(), x_test[:50].toarray()])
    expected = 1 / (1 + np.exp(-(design @ model.linear.coef + model.linear.intercept)))
    assert np.allclose(model.predict(x_test[:50]), expected)
    again = gbdt_lr.from_bytes(raw, gbdt_lr.to_bytes(model))      # as a run and a registry version store it
    assert again.nodes == model.nodes and again.linear.reg == model.linear.reg
    assert np.array_equal(again.predict(x_test), model.predict(x_test))


def test_too_few_rows_to_hold_out_is_refused():
    import xgboost

    x, y = xor_data(200, 1)
    booster = xgboost.train({"objective": "binary:logistic"}, xgboost.DMatrix(x, label=y), num_boost_round=2)
    with pytest.raises(ValueError, match="too few to hold out"):
        gbdt_lr.fit(bytes(booster.save_raw("ubj")), x[:3], y[:3], np.ones(3), np.arange(3), (1e-3,), 1,
                    logistic.fit)
