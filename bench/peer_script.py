"""The peer: what a user would write instead of the pipeline, in one process.

    python -m bench.peer_script DATA.tsv.gz [--threads 2] [--trees 100] [--depth 6] [--seed 42]

pandas reads the Criteo-DAC-layout file (label, I1-I13, C1-C26, tab-separated), an exact random
80/10/10 split (a permutation), the pipeline's default encoding (numeric columns as they are, each
categorical value seen at least 5 times in train gets a one-hot column, rarer and unseen values one
out-of-vocabulary column per field, missing values absent), ``xgboost.train`` with hist on all threads
(a fixed 100 trees, as issue 12 describes the peer: no per-round evaluation, which XGBoost's CPU
prediction makes cost rows x columns per round; with the 100,000 validation rows evaluated every round
this script's training took 51.7 s instead of 14.6 s on 1M demo rows, measured 2026-12-03), then test
AUC and MXE. Prints one JSON object: seconds per step (named like the pipeline's stages) and
the metrics.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]
MIN_COUNT = 5


def encode(frame, vocab: dict, numeric_width: int):
    """CSR matrix of ``frame``: numeric columns first, then per categorical column its vocabulary and OOV."""
    import numpy as np
    from scipy.sparse import csr_matrix, hstack

    n = len(frame)
    num = frame[NUMERIC].to_numpy(dtype=np.float32)
    num[num == 0] = np.finfo(np.float32).tiny  # a real 0 stays a value; NaN becomes absent below
    rows, cols = np.nonzero(~np.isnan(num))
    blocks = [csr_matrix((num[rows, cols], (rows, cols)), shape=(n, numeric_width))]
    for column in CATEGORICAL:
        values = vocab[column]
        series = frame[column]
        codes = values.get_indexer(series)
        present = series.notna().to_numpy()
        codes = np.where(codes < 0, len(values), codes)  # OOV column after the vocabulary
        keep = np.flatnonzero(present)
        blocks.append(csr_matrix((np.ones(len(keep), dtype=np.float32), (keep, codes[keep])),
                                 shape=(n, len(values) + 1)))
    return hstack(blocks, format="csr")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd
    import xgboost as xgb
    from sklearn.metrics import log_loss, roc_auc_score

    seconds = {}
    t0 = time.perf_counter()
    dtypes = {"label": np.int8, **{c: np.float32 for c in NUMERIC}, **{c: object for c in CATEGORICAL}}
    frame = pd.read_csv(args.data, sep="\t", header=None, names=["label", *NUMERIC, *CATEGORICAL], dtype=dtypes)
    order = np.random.default_rng(args.seed).permutation(len(frame))
    n_train, n_valid = int(0.8 * len(frame)), int(0.1 * len(frame))
    train = frame.iloc[order[:n_train]]
    valid = frame.iloc[order[n_train:n_train + n_valid]]
    test = frame.iloc[order[n_train + n_valid:]]
    del frame
    seconds["sample"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    vocab = {}
    for column in CATEGORICAL:
        counts = train[column].value_counts()
        vocab[column] = pd.Index(counts.index[counts >= MIN_COUNT])
    x_train, _, x_test = (encode(f, vocab, len(NUMERIC)) for f in (train, valid, test))  # validation encoded too,
    y_train, y_test = (f["label"].to_numpy() for f in (train, test))                     # as the pipeline does
    seconds["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": args.depth, "eta": 0.1,
              "nthread": args.threads, "eval_metric": "logloss"}
    dtrain = xgb.DMatrix(x_train, label=y_train, missing=np.nan, nthread=args.threads)
    booster = xgb.train(params, dtrain, num_boost_round=args.trees, verbose_eval=False)
    seconds["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    p = booster.predict(xgb.DMatrix(x_test, missing=np.nan, nthread=args.threads))
    auc, mxe = float(roc_auc_score(y_test, p)), float(log_loss(y_test, p))
    seconds["evaluate"] = time.perf_counter() - t0

    print(json.dumps({"seconds": seconds, "rows": {"input": n_train + n_valid + len(test), "train": n_train,
                                                    "test": len(test)},
                      "width": x_train.shape[1], "test_auc": auc, "test_mxe": mxe}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
