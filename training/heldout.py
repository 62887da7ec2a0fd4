"""Early stopping on held-out rows from the trees' leaves, not from XGBoost's per-round evaluation.

XGBoost's CPU predictor resets a buffer as wide as the feature space for every row it scores, so each
call costs rows x columns whatever the trees: evaluating a held-out DMatrix every round is one such call
per round. Measured on the search's sample of the 1M demo rows (16,826 held rows, 15,007 columns, one
thread): 22 ms per round, more than growing the round's tree (17 ms); 100 rounds took 4.0 s with the
evaluation and 1.7 s without.

:class:`LeafLosses` asks for the leaves of the trees grown since its last look, narrowed to the columns
they split on, and adds their leaf values to each row's margin: the per-round log loss. :class:`LeafCurve`
looks every ``every`` rounds.
The stopping rule is XGBoost's (``patience`` rounds without a strictly lower loss; the first of equal
losses is the best), applied to every round, so the best round is the one XGBoost's early stopping
finds; at most ``every`` - 1 rounds are grown past the stop and not used.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from xgboost.callback import TrainingCallback

EPS = 1e-16   # XGBoost's log loss clips probabilities to [EPS, 1 - EPS]


def supported(params: dict) -> bool:
    """Whether the leaves give the margins: one tree per round of a plain gbtree with the logistic loss."""
    return (params.get("objective", "binary:logistic") == "binary:logistic"
            and params.get("booster", "gbtree") == "gbtree" and int(params.get("num_parallel_tree", 1)) == 1)


def log_losses(margins: np.ndarray, y: np.ndarray, w: Optional[np.ndarray]) -> np.ndarray:
    """Weighted log loss of each column of ``margins`` (rows x rounds) against labels ``y``."""
    from scipy.special import expit

    p = np.clip(expit(margins), EPS, 1 - EPS)
    ll = -(y[:, None] * np.log(p) + (1 - y[:, None]) * np.log(1 - p))
    return ll.mean(axis=0) if w is None else (w[:, None] * ll).sum(axis=0) / w.sum()


class LeafLosses:
    """Per-round log loss of held-out rows (CSR ``x`` with absent entries missing, labels ``y``, weights
    ``w`` or None) under a growing booster, from the leaves of the trees added since the last update,
    asked of those trees narrowed to the columns they split on (:mod:`ctr_pipeline.narrow`), so that a
    look costs little more than walking the new trees. Picklable (it travels to the Spark tasks)."""

    def __init__(self, x, y: np.ndarray, w: Optional[np.ndarray]):
        self.x, self.y = x, np.asarray(y, dtype=np.float64)
        self.w = None if w is None else np.asarray(w, dtype=np.float64)
        self.losses: list[float] = []
        self._margin: Optional[np.ndarray] = None

    def _steps(self, trees, margin: bool = False):
        """(per-tree margin contributions of each row, rows x trees; XGBoost's margin when ``margin``)."""
        from ctr_pipeline.narrow import narrow

        narrowed = narrow(trees)
        held = narrowed.matrix(self.x)
        leaves = narrowed.booster.predict(held, pred_leaf=True).reshape(self.y.shape[0], -1).astype(np.int64)
        steps = np.column_stack([narrowed.leaf_values[t][leaves[:, t]] for t in range(leaves.shape[1])])
        return steps, (narrowed.booster.predict(held, output_margin=True).astype(np.float64) if margin else None)

    def update(self, model) -> list[float]:
        """The losses of every round of ``model`` (those of rounds seen before are kept, not recomputed)."""
        rounds, seen = model.num_boosted_rounds(), len(self.losses)
        if rounds <= seen:
            return self.losses
        if self._margin is None:   # before any tree: XGBoost's margin of the first tree less its leaf values
            steps, first = self._steps(model[0:1], margin=True)
            self._margin = first - steps[:, 0]
        steps, _ = self._steps(model[seen:rounds])
        margins = self._margin[:, None] + np.cumsum(steps, axis=1)
        self.losses.extend(float(v) for v in log_losses(margins, self.y, self.w))
        self._margin = margins[:, -1]
        return self.losses

    def truncate(self, rounds: int) -> None:
        """Forget the rounds after the first ``rounds`` (a stop found inside the last update)."""
        del self.losses[rounds:]


class LeafCurve(TrainingCallback):
    """XGBoost's early stopping after ``patience`` rounds (None: never stop) on the per-round log loss of
    held-out rows (see :class:`LeafLosses`), looked at every ``every`` rounds."""

    def __init__(self, x, y: np.ndarray, w: Optional[np.ndarray], patience: Optional[int], every: int = 10):
        super().__init__()
        self.curve = LeafLosses(x, y, w)
        self.patience, self.every = patience, max(1, every)
        self.best: Optional[int] = None      # 0-based round of the lowest loss
        self.stopped: Optional[int] = None   # 0-based round at which the rule stopped

    @property
    def losses(self) -> list[float]:
        return self.curve.losses

    def _look(self, model) -> None:
        from .core import best_round, patience_stop

        if self.stopped is not None:
            return
        seen = len(self.curve.losses)
        losses = self.curve.update(model)
        for r in range(seen, len(losses)):   # every new round, in order: the first that stops
            if self.patience is not None and patience_stop(losses[: r + 1], self.patience):
                self.stopped = r
                self.curve.truncate(r + 1)
                break
        self.best = best_round(self.curve.losses)

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        if model.num_boosted_rounds() - len(self.curve.losses) >= self.every:
            self._look(model)
        return self.stopped is not None

    def after_training(self, model):
        self._look(model)
        return model
