"""XGBoost's ``refresh`` updater, computed so that it is correct on any number of workers (pure).

What ``xgboost.train(params, new_data, num_boost_round=T, xgb_model=booster, process_type="update",
updater="refresh")`` does, tree by tree: the margins are the base margin plus the trees refreshed so
far; from them the logistic gradient and hessian of every row; every node's sums of both over the rows
that pass through it; then each node's weight ``CalcWeight`` (L1, L2, min_child_weight,
max_delta_step), its hessian sum, each split's loss change, and with ``refresh_leaf`` each leaf's value
``weight * eta``. The splits never change, so a row's leaf in every tree is fixed: computed once
(``pred_leaf``), the per-tree work is sums of (g, h) per leaf, which add up across workers (xgboost
2.1-3.3 combine the workers' sums with max instead of sum: wrong beyond one worker, see DESIGN.md).

Arithmetic follows XGBoost's: predictions, gradients and leaf values in float32, sums in float64.
Only ``binary:logistic`` is supported (the pipeline's objective).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

HESS_EPS = np.float32(1e-16)   # XGBoost's kRtEps: the smallest hessian of the logistic loss


@dataclass(frozen=True)
class RefreshParams:
    learning_rate: float = 0.3
    reg_lambda: float = 1.0
    reg_alpha: float = 0.0
    min_child_weight: float = 1.0
    max_delta_step: float = 0.0
    scale_pos_weight: float = 1.0
    refresh_leaf: bool = True

    @classmethod
    def from_training(cls, params: dict[str, Any], **overrides: Any) -> "RefreshParams":
        """From the training stage's recorded parameters (XGBoost's names and aliases), XGBoost's defaults
        for the ones not given."""
        p = {**params, **{k: v for k, v in overrides.items() if v is not None}}
        pick = lambda *names, default: float(next((p[n] for n in names if p.get(n) is not None), default))
        return cls(learning_rate=pick("learning_rate", "eta", default=0.3),
                   reg_lambda=pick("reg_lambda", "lambda", default=1.0),
                   reg_alpha=pick("reg_alpha", "alpha", default=0.0),
                   min_child_weight=pick("min_child_weight", default=1.0),
                   max_delta_step=pick("max_delta_step", default=0.0),
                   scale_pos_weight=pick("scale_pos_weight", default=1.0),
                   refresh_leaf=bool(p.get("refresh_leaf", True)))


# ---------------------------------------------------------------------------------------------- XGBoost's rules

def _threshold_l1(g: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(g > alpha, g - alpha, np.where(g < -alpha, g + alpha, 0.0))


def calc_weight(p: RefreshParams, g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """XGBoost's CalcWeight, vectorised over nodes (float64)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        w = -_threshold_l1(g, p.reg_alpha) / (h + p.reg_lambda)
    if p.max_delta_step != 0.0:
        w = np.where(np.abs(w) > p.max_delta_step, np.copysign(p.max_delta_step, w), w)
    return np.where((h < p.min_child_weight) | (h <= 0.0), 0.0, w)


def calc_gain(p: RefreshParams, g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """XGBoost's CalcGain, vectorised over nodes (float64)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if p.max_delta_step == 0.0:
            gain = _threshold_l1(g, p.reg_alpha) ** 2 / (h + p.reg_lambda)
        else:
            w = calc_weight(p, g, h)
            gain = -(2.0 * g * w + (h + p.reg_lambda) * w * w) + p.reg_alpha * np.abs(w)
    return np.where((h < p.min_child_weight) | (h <= 0.0), 0.0, gain)


# ---------------------------------------------------------------------------------------------- the model

@dataclass
class Trees:
    """A binary:logistic booster's trees as parsed from its JSON model (which :meth:`to_json` rewrites)."""

    doc: dict[str, Any]

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Trees":
        doc = json.loads(raw)
        objective = doc["learner"]["objective"]["name"]
        if objective != "binary:logistic":
            raise ValueError(f"refresh supports binary:logistic boosters, not {objective}")
        return cls(doc)

    @property
    def trees(self) -> list[dict[str, Any]]:
        return self.doc["learner"]["gradient_booster"]["model"]["trees"]

    def __len__(self) -> int:
        return len(self.trees)

    def base_margin(self) -> np.float32:
        """The margin before any tree: logit of base_score, in float32 as XGBoost computes it."""
        text = self.doc["learner"]["learner_model_param"]["base_score"]
        score = np.float32(float(text.strip("[]").split(",")[0]))
        return np.float32(-np.log(np.float32(1.0) / score - np.float32(1.0)))

    def leaf_values(self, t: int) -> np.ndarray:
        """Per node id of tree ``t``: the leaf value (0 for split nodes), float32."""
        tree = self.trees[t]
        leaf = np.asarray(tree["left_children"]) == -1
        return np.where(leaf, np.asarray(tree["split_conditions"], dtype=np.float32), np.float32(0.0))

    def node_sums(self, t: int, leaf_g: np.ndarray, leaf_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sums of every node of tree ``t`` from its leaves' sums (a node's rows are its leaves' rows)."""
        parents = np.asarray(self.trees[t]["parents"])
        depth = np.zeros(len(parents), dtype=np.int64)
        for nid in range(len(parents)):
            up = nid
            while up != 0 and parents[up] < len(parents):
                up = parents[up]
                depth[nid] += 1
        g, h = leaf_g.astype(np.float64).copy(), leaf_h.astype(np.float64).copy()
        for nid in sorted(range(1, len(parents)), key=lambda n: -depth[n]):   # deepest first
            if parents[nid] < len(parents):
                g[parents[nid]] += g[nid]
                h[parents[nid]] += h[nid]
        return g, h

    def refresh(self, t: int, g: np.ndarray, h: np.ndarray, p: RefreshParams) -> None:
        """Refresh tree ``t`` in place from its nodes' sums (XGBoost's TreeRefresher::Refresh)."""
        tree = self.trees[t]
        left, right = np.asarray(tree["left_children"]), np.asarray(tree["right_children"])
        leaf = left == -1
        weight = calc_weight(p, g, h).astype(np.float32)
        tree["base_weights"] = weight.tolist()
        tree["sum_hessian"] = h.astype(np.float32).tolist()
        gain = calc_gain(p, g, h)
        split = ~leaf
        loss = np.asarray(tree["loss_changes"], dtype=np.float64)
        loss[split] = (gain[left[split]] + gain[right[split]] - gain[split])
        tree["loss_changes"] = loss.astype(np.float32).tolist()
        if p.refresh_leaf:
            values = np.asarray(tree["split_conditions"], dtype=np.float32)
            values[leaf] = weight[leaf] * np.float32(p.learning_rate)
            tree["split_conditions"] = values.tolist()

    def extend(self, other: "Trees") -> None:
        """Append ``other``'s trees (trained on this model's margins as base margin): the result predicts
        this model's margin plus ``other``'s trees, which is what continued training gives."""
        mine = self.doc["learner"]["gradient_booster"]["model"]
        theirs = other.doc["learner"]["gradient_booster"]["model"]
        if theirs.get("cats") and any(theirs["cats"].values()) or mine["gbtree_model_param"]["num_parallel_tree"] != \
                theirs["gbtree_model_param"]["num_parallel_tree"]:
            raise ValueError("only trees without categorical splits and with the same num_parallel_tree are appended")
        start = len(mine["trees"])
        mine["trees"] += [{**tree, "id": start + k} for k, tree in enumerate(theirs["trees"])]
        mine["tree_info"] += theirs["tree_info"]
        last = mine["iteration_indptr"][-1]
        mine["iteration_indptr"] += [last + i for i in theirs["iteration_indptr"][1:]]
        mine["gbtree_model_param"]["num_trees"] = str(len(mine["trees"]))
        self.doc["learner"]["attributes"] = {}

    def to_json(self) -> bytes:
        return json.dumps(self.doc).encode()


def gradients(margin: np.ndarray, y: np.ndarray, w: np.ndarray, p: RefreshParams) -> tuple[np.ndarray, np.ndarray]:
    """Logistic loss gradient and hessian per row as XGBoost computes them (float32), times the weight."""
    prob = np.float32(1.0) / (np.float32(1.0) + np.exp(-margin.astype(np.float32)))
    weight = w.astype(np.float32)
    if p.scale_pos_weight != 1.0:
        weight = np.where(y == 1, weight * np.float32(p.scale_pos_weight), weight).astype(np.float32)
    g = (prob - y.astype(np.float32)) * weight
    h = np.maximum(prob * (np.float32(1.0) - prob), HESS_EPS) * weight
    return g, h


def leaf_sums(leaves: np.ndarray, g: np.ndarray, h: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of g and h per node id over rows whose leaf is ``leaves`` (float64)."""
    return (np.bincount(leaves, weights=g.astype(np.float64), minlength=num_nodes),
            np.bincount(leaves, weights=h.astype(np.float64), minlength=num_nodes))


def add_tree(margin: np.ndarray, leaves: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Margins after one more tree (float32 additions, as XGBoost's prediction cache)."""
    return (margin.astype(np.float32) + values[leaves]).astype(np.float32)


def refresh_local(trees: Trees, leaves: np.ndarray, y: np.ndarray, w: np.ndarray, p: RefreshParams,
                  chunks: Sequence[slice] = (slice(None),)) -> Trees:
    """The whole refresh in one process, the rows split in ``chunks`` whose sums are added (the sum a
    cluster computes); ``leaves`` is (rows, trees) from ``pred_leaf``."""
    margin = np.full(len(y), trees.base_margin(), dtype=np.float32)
    for t in range(len(trees)):
        n = len(trees.trees[t]["parents"])
        g_sum, h_sum = np.zeros(n), np.zeros(n)
        g, h = gradients(margin, y, w, p)
        for part in chunks:
            a, b = leaf_sums(leaves[part, t], g[part], h[part], n)
            g_sum += a
            h_sum += b
        trees.refresh(t, *trees.node_sums(t, g_sum, h_sum), p)
        margin = add_tree(margin, leaves[:, t], trees.leaf_values(t))
    return trees
