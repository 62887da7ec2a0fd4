"""L2-regularised logistic regression on a sparse matrix in one process: the logistic regression baseline.

The objective is Spark MLlib's ``LogisticRegression(standardization=False)``: the weighted mean log loss
plus ``reg / 2 * ||coef||^2`` (intercept not penalised). As MLlib does, the optimiser works on columns
scaled (here by the inverse square root of each coordinate's curvature at the start, which conditions
the problem better than unit variance), with the penalty scaled back so that the solution is that of the
unscaled problem. L-BFGS is scipy's, with MLlib's defaults (100 iterations, relative tolerance 1e-6).
Not ``standardization=True``: penalising standardised coefficients amounts to almost no regularisation
of rare one-hot values (measured with MLlib: test AUC 0.56 on the demo).

Why not MLlib itself: the baseline is fit on a capped sample (``evaluation.baseline_rows``), which fits in
one process, where each L-BFGS step is two sparse products instead of a Spark job (measured at 1M demo
rows: MLlib's three fits of the regularisation grid took 20-44 s of the evaluate stage). Why not
scikit-learn: its penalty cannot be weighted per column, so it cannot solve MLlib's problem on scaled
columns, and on the raw columns (numeric values up to 6e6) its L-BFGS does not converge in a useful time.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from scipy.sparse import csr_matrix, diags


@dataclass(frozen=True)
class LinearModel:
    """p = sigmoid(x . coef + intercept)."""

    coef: np.ndarray
    intercept: float
    reg: float
    iterations: int
    converged: bool

    def predict(self, x: csr_matrix) -> np.ndarray:
        return expit(x @ self.coef + self.intercept)


@contextlib.contextmanager
def one_blas_thread():
    """BLAS (OpenBLAS under numpy and scipy) on one thread while the enclosed fits run. L-BFGS's vector
    steps, one value per column, are too short for BLAS's threads, which then only contend, and the more so
    with fits side by side in threads. Measured on the 1M demo's LR sample (200,000 rows x 93,005
    columns, 2 cores): the three fits of the regularisation grid in threads took 2.27 s, and 1.06 s with
    one BLAS thread; 40 L-BFGS-B steps alone 0.46 s against 0.09 s. Process-wide (threadpoolctl), so it is
    taken once around all the fits, never inside one of several running at once."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


def fit(x: csr_matrix, y: np.ndarray, w: np.ndarray, reg: float, max_iter: int = 100,
        tol: float = 1e-6) -> LinearModel:
    """Fit on rows ``x`` (CSR), labels ``y`` in {0, 1} and row weights ``w``."""
    x = csr_matrix(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if x.shape[0] != y.shape[0] or y.shape != w.shape:
        raise ValueError(f"rows: x {x.shape[0]}, y {y.shape[0]}, w {w.shape[0]}")
    if x.shape[0] == 0 or w.sum() <= 0:
        raise ValueError("no rows (or no weight) to fit on")
    total = w.sum()
    rate = np.average(y, weights=w)
    # Jacobi scaling: every coordinate's curvature at the start (the loss's at the base rate, plus the
    # penalty's) becomes 1; the problem solved is unchanged, only better conditioned for L-BFGS.
    second = np.asarray(x.multiply(x).T @ w).ravel() / total
    # (a column never set, with reg 0, has no curvature and no gradient: any finite scale will do)
    scale = 1.0 / np.sqrt(np.maximum(max(rate * (1 - rate), 1e-6) * second + reg, 1e-12))
    xs = (x @ diags(scale)).tocsr()
    penalty = reg * scale ** 2           # reg * (beta * scale)^2 / 2 on the scaled coefficients beta
    start = np.zeros(x.shape[1] + 1)
    if 0 < rate < 1:
        start[-1] = np.log(rate / (1 - rate))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        beta, b = theta[:-1], theta[-1]
        z = xs @ beta + b
        loss = np.dot(w, np.logaddexp(0.0, z) - y * z) / total + 0.5 * np.dot(penalty, beta * beta)
        g = w * (expit(z) - y) / total
        grad = np.empty_like(theta)
        grad[:-1] = xs.T @ g + penalty * beta
        grad[-1] = g.sum()
        return loss, grad

    res = minimize(objective, start, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-9})
    coef = res.x[:-1] * scale
    return LinearModel(coef, float(res.x[-1]), reg, int(res.nit), bool(res.success))
