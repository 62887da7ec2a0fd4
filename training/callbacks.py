"""The XGBoost callback the training stage hands to ``xgboost.spark``: progress lines, checkpoints, early
stopping with patience and the cost-aware stopping rule (both on the history of every round, resumed ones
included). It is pickled to the Spark task(s) that train; only rank 0 writes and logs.

Every decision uses the evaluation log, which XGBoost all-reduces, so all workers stop at the same round.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Optional, Union

from xgboost import collective
from xgboost.callback import TrainingCallback

from ctr_pipeline.storage import Location

from .checkpoints import CheckpointStore
from .core import cost_aware_stop, merged_history, patience_stop

METRIC = "logloss"


class PipelineCallback(TrainingCallback):
    def __init__(self, total_rounds: int, checkpoint_uri: Optional[Union[str, Location]], checkpoint_every: int,
                 progress_every: int, min_relative_gain: Optional[float], gain_window: int,
                 earlier: Optional[dict] = None, patience: Optional[int] = None):
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

    @staticmethod
    def _rank() -> int:
        return collective.get_rank() if collective.is_distributed() else 0

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        rounds = model.num_boosted_rounds()          # trees so far, resumed ones included
        history = merged_history(self.earlier, evals_log)
        valid = history.get("validation", {}).get(METRIC, [])
        train = history.get("training", {}).get(METRIC, [])
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
        reason = None
        if self.patience is not None and valid and patience_stop(valid, self.patience):
            reason = f"validation MXE has not improved for {self.patience} rounds"
        elif self.min_gain is not None and valid and cost_aware_stop(valid, self.window, self.min_gain):
            reason = f"the last {self.window} trees improved validation MXE by less than {self.min_gain:.3%}"
        if reason and self._rank() == 0:
            print(f"train: stopping at round {rounds}: {reason}", file=sys.stderr, flush=True)
        return reason is not None

