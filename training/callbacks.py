"""The XGBoost callback the training stage hands to ``xgboost.spark``: progress lines, checkpoints, early
stopping with patience and the cost-aware stopping rule (both on the history of every round, resumed ones
included). It is pickled to the Spark task(s) that train; only rank 0 writes and logs.

Every decision uses the evaluation log, which XGBoost all-reduces, so all workers stop at the same round.
With ``held`` (:class:`training.heldout.LeafLosses`) the validation log is computed from the trees' leaves
instead, every ``look_every`` rounds and whenever a checkpoint or progress line is due, by every worker
on the same rows and the same trees, so the workers still decide alike; a stop found inside a look is
placed at its own round, as XGBoost's evaluation of every round would place it.
"""
from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Optional, Union

from xgboost import collective
from xgboost.callback import TrainingCallback

from ctr_pipeline.storage import Location

from .checkpoints import CheckpointStore
from .core import cost_aware_stop, merged_history, patience_stop

if TYPE_CHECKING:
    from .heldout import LeafLosses

METRIC = "logloss"
VALIDATION_ATTR = "ctr_pipeline_validation"   # the leaf-computed validation log, handed back on the booster


class PipelineCallback(TrainingCallback):
    def __init__(self, total_rounds: int, checkpoint_uri: Optional[Union[str, Location]], checkpoint_every: int,
                 progress_every: int, min_relative_gain: Optional[float], gain_window: int,
                 earlier: Optional[dict] = None, patience: Optional[int] = None,
                 held: "Optional[LeafLosses]" = None, look_every: int = 10):
        super().__init__()
        self.earlier = earlier or {}   # per-round history of the rounds a resumed booster already has
        self.total = total_rounds
        self.store = CheckpointStore(checkpoint_uri) if checkpoint_uri and checkpoint_every else None
        self.every = checkpoint_every
        self.progress_every = progress_every
        self.min_gain = min_relative_gain
        self.window = gain_window
        self.patience = patience
        self.started = time.monotonic()
        self.held, self.look_every = held, max(1, look_every)
        self.checked = len(self.earlier.get("validation", {}).get(METRIC, []))   # rounds the rules have seen

    @staticmethod
    def _rank() -> int:
        return collective.get_rank() if collective.is_distributed() else 0

    def _due(self, rounds: int) -> bool:
        """Whether the leaf-computed validation log must reach round ``rounds`` now."""
        return (rounds - len(self.held.losses) >= self.look_every or rounds >= self.total
                or (self.store is not None and rounds % self.every == 0)
                or bool(self.progress_every and rounds % self.progress_every == 0))

    def _rule(self, valid: list) -> Optional[str]:
        if self.patience is not None and patience_stop(valid, self.patience):
            return f"validation MXE has not improved for {self.patience} rounds"
        if self.min_gain is not None and cost_aware_stop(valid, self.window, self.min_gain):
            return f"the last {self.window} trees improved validation MXE by less than {self.min_gain:.3%}"
        return None

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        rounds = model.num_boosted_rounds()          # trees so far, resumed ones included
        history = merged_history(self.earlier, evals_log)
        if self.held is not None:
            if self._due(rounds):
                self.held.update(model)
            history["validation"] = {METRIC: list(self.held.losses)}
        valid = history.get("validation", {}).get(METRIC, [])
        train = history.get("training", {}).get(METRIC, [])
        reason, stop = None, rounds
        for r in range(self.checked, len(valid)):    # every round not yet judged, in order
            reason = self._rule(valid[: r + 1])
            if reason:
                stop = r + 1
                break
        self.checked = len(valid)
        if reason and self.held is not None:   # the rounds grown past the stop are not part of the log
            self.held.truncate(stop)
            valid = history["validation"][METRIC] = valid[:stop]
        if self._rank() == 0:
            if self.store is not None and rounds % self.every == 0 and rounds < self.total:
                model.set_attr(ctr_pipeline_history=json.dumps(history))
                self.store.put(rounds, bytes(model.save_raw("ubj")))
            if self.progress_every and (rounds % self.progress_every == 0 or rounds == self.total):
                line = f"train: round {rounds}/{self.total}, {time.monotonic() - self.started:.1f}s"
                if train:
                    line += f", train MXE {train[-1]:.5f}"
                if valid:
                    line += f", validation MXE {valid[-1]:.5f}"
                print(line, file=sys.stderr, flush=True)
            if reason:
                print(f"train: stopping at round {stop}: {reason}", file=sys.stderr, flush=True)
        return reason is not None

    def after_training(self, model):
        if self.held is not None:
            model.set_attr(**{VALIDATION_ATTR: json.dumps(self.held.losses)})
        return model
