"""The logistic regression baseline's solver: MLlib's objective (weighted mean log loss + reg/2 ||coef||^2,
intercept free), checked against scikit-learn on the equivalent problem and against MLlib itself."""
import numpy as np
import pytest
from scipy.sparse import random as sparse_random

from evaluation import logistic


def problem(rows=400, cols=30, seed=0):
    rng = np.random.default_rng(seed)
    x = sparse_random(rows, cols, density=0.2, format="csr", random_state=seed)
    x.data = np.round(x.data * 3, 2)
    x.data[x.indices == 5] = 0.0                   # a column never set: its coefficient must stay 0
    x.eliminate_zeros()
    truth = rng.normal(size=cols)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x @ truth - 0.5)))).astype(float)
    w = rng.uniform(0.5, 2.0, rows)
    return x, y, w


@pytest.mark.parametrize("reg", [1e-3, 1e-1])
def test_solution_equals_scikit_learn_on_the_same_objective(reg):
    from sklearn.linear_model import LogisticRegression

    x, y, w = problem()
    got = logistic.fit(x, y, w, reg, max_iter=1000, tol=1e-14)
    # sklearn minimises C * sum(w * loss) + ||coef||^2 / 2: the same optimum when C = 1 / (reg * sum(w))
    ref = LogisticRegression(C=1 / (reg * w.sum()), tol=1e-12, max_iter=10000).fit(x, y, sample_weight=w)
    assert got.converged
    np.testing.assert_allclose(got.coef, ref.coef_.ravel(), atol=2e-4)
    assert got.intercept == pytest.approx(ref.intercept_[0], abs=2e-4)
    assert got.coef[5] == 0.0
    np.testing.assert_allclose(got.predict(x), ref.predict_proba(x)[:, 1], atol=1e-4)


def test_stronger_penalty_shrinks_and_default_tolerance_is_close():
    x, y, w = problem(seed=3)
    loose, tight = logistic.fit(x, y, w, 1e-2), logistic.fit(x, y, w, 1e-2, max_iter=1000, tol=1e-14)
    strong = logistic.fit(x, y, w, 1.0)
    assert np.linalg.norm(strong.coef) < np.linalg.norm(tight.coef)
    np.testing.assert_allclose(loose.predict(x), tight.predict(x), atol=1e-3)


def test_bad_input_is_refused():
    x, y, w = problem()
    with pytest.raises(ValueError, match="rows"):
        logistic.fit(x, y[:-1], w, 1e-3)
    with pytest.raises(ValueError, match="no rows"):
        logistic.fit(x[:0], y[:0], w[:0], 1e-3)


def test_solution_equals_mllib_logistic_regression(spark):
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.linalg import Vectors

    x, y, w = problem(rows=300, cols=8, seed=5)
    rows = [(float(y[i]), float(w[i]), Vectors.sparse(8, dict(zip(x[i].indices.tolist(), x[i].data.tolist()))))
            for i in range(x.shape[0])]
    df = spark.createDataFrame(rows, ["label", "weight", "features"])
    reg = 1e-2
    ref = LogisticRegression(regParam=reg, elasticNetParam=0.0, standardization=False, weightCol="weight",
                             maxIter=1000, tol=1e-12).fit(df)
    got = logistic.fit(x, y, w, reg, max_iter=1000, tol=1e-14)
    np.testing.assert_allclose(got.coef, ref.coefficients.toArray(), atol=1e-4)
    assert got.intercept == pytest.approx(ref.intercept, abs=1e-4)


def test_no_penalty_with_an_unset_column_stays_finite():
    x, y, w = problem(seed=7)
    got = logistic.fit(x, y, w, 0.0, max_iter=200)
    assert np.isfinite(got.coef).all() and got.coef[5] == 0.0
    assert np.isfinite(got.predict(x)).all()


def test_blas_is_on_one_thread_only_inside_the_block():
    from threadpoolctl import threadpool_info

    def blas() -> set:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = blas()
    with logistic.one_blas_thread():
        assert blas() == {1}
    assert blas() == before
