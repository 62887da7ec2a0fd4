"""Transforming rows, pure: a pandas frame of raw columns to sparse rows (CSR arrays).

One function serves every path, so training and scoring cannot drift apart: the Spark stage calls it
on Arrow batches, single-process scoring and the tests call it on pandas frames.

Missing, zero and absent, the one rule: the vectors are read by XGBoost with ``missing=0.0`` (the
sparse Spark path), so an entry that is absent from the vector is *missing*. A feature whose value is
missing (null numeric, null category, no time) is left out; a real value of 0 is stored as
:data:`ZERO` (float32's smallest normal number, 1.2e-38) so that it stays a value, ordered below every
positive number and above every negative one. No stored entry is ever 0.0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from .hashing import bucket_of, cross_values, fold_of
from .spec import cross_name
from .state import FittedTransform, Slot

ZERO = float(np.finfo(np.float32).tiny)
SPARSE = 0  # VectorUDT's type tag of a sparse vector, in the stored form the feature engines write


@dataclass
class Encoded:
    """CSR rows: row i holds ``indices[indptr[i]:indptr[i+1]]`` (ascending) and the matching ``values``."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    width: int

    def to_scipy(self):
        from scipy.sparse import csr_matrix

        return csr_matrix((self.values, self.indices, self.indptr), shape=(len(self.indptr) - 1, self.width))


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)


def _category(frame: pd.DataFrame, column: str) -> pd.Series:
    s = frame[column]
    return s if s.dtype == object else s.astype(object).where(s.notna(), None)


def _slot_values(t: FittedTransform, slot: Slot, frame: pd.DataFrame, folds: Optional[np.ndarray]) -> np.ndarray:
    """The slot's value per row; NaN where it is missing."""
    kind = slot.kind
    if kind.startswith("numeric:"):
        x = _numeric(frame, slot.source)
        if kind == "numeric:log1p":
            return signed_log1p(x)
        if kind == "numeric:quantile":
            bucket = np.searchsorted(np.asarray(t.quantiles[slot.source]), x, side="right") + 1.0
            return np.where(np.isnan(x), np.nan, bucket)
        return x
    if kind.startswith("time:"):
        seconds = _numeric(frame, slot.source)
        days = np.floor(seconds / 86400.0)
        if kind == "time:hour":
            return np.floor((seconds - days * 86400.0) / 3600.0)
        return np.mod(days + 3.0, 7.0)  # 1970-01-01 was a Thursday; Monday is 0
    values = _category(frame, slot.source)
    missing = values.isna().to_numpy()
    if kind == "count":
        table = t.counts[slot.source]
        pos = table.index.get_indexer(values)
        out = np.where(pos >= 0, table.to_numpy(np.float64)[np.maximum(pos, 0)], 0.0)
    else:
        out = _target_values(t, slot.source, values, folds)
    out[missing] = np.nan
    return out


def _target_values(t: FittedTransform, column: str, values: pd.Series, folds: Optional[np.ndarray]) -> np.ndarray:
    """Smoothed CTR (clicks + m*prior) / (n + m); out of fold when ``folds`` is given."""
    table, m, tot = t.target[column], t.spec.smoothing, t.totals
    pos = table.index.get_indexer(values)
    seen = pos >= 0
    safe = np.maximum(pos, 0)
    n = np.where(seen, table["n"].to_numpy(np.float64)[safe], 0.0)
    c = np.where(seen, table["clicks"].to_numpy(np.float64)[safe], 0.0)
    if folds is None:
        prior = np.full(len(values), tot.ctr)
    else:
        k = t.spec.folds
        nf = table[[f"n{f}" for f in range(k)]].to_numpy(np.float64)
        cf = table[[f"c{f}" for f in range(k)]].to_numpy(np.float64)
        n = n - np.where(seen, nf[safe, folds], 0.0)
        c = c - np.where(seen, cf[safe, folds], 0.0)
        rows = tot.rows - np.asarray(tot.fold_rows, dtype=np.float64)[folds]
        clicks = tot.clicks - np.asarray(tot.fold_clicks, dtype=np.float64)[folds]
        prior = np.divide(clicks, rows, out=np.zeros(len(values)), where=rows > 0)
    denom = n + m
    return np.divide(c + m * prior, denom, out=prior.copy(), where=denom > 0)


def vocab_positions(t: FittedTransform, frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(position of each row's value in ``column``'s vocabulary, -1 when it is not there; whether the value is
    missing)."""
    values = _category(frame, column)
    return t.vocab[column].get_indexer(values), values.isna().to_numpy()


def encode(t: FittedTransform, frame: pd.DataFrame, out_of_fold: bool = False,
           positions: Optional[dict[str, tuple[np.ndarray, np.ndarray]]] = None) -> Encoded:
    """Sparse rows of ``frame`` (raw columns as the reader types them, plus ``row_id`` when
    ``out_of_fold``). ``out_of_fold`` is for the train split only: each row's target encoding then comes
    from the other folds, so its own label never reaches its features. ``positions``: vocabulary columns'
    :func:`vocab_positions`, already looked up (such a column may then be absent from ``frame``)."""
    n = len(frame)
    spec = t.spec
    folds = fold_of(frame["row_id"].to_numpy(), spec.folds, spec.seed) if out_of_fold and t.target else None
    idx_cols: list[np.ndarray] = []
    val_cols: list[np.ndarray] = []
    ones = np.ones(n)
    for slot in t.slots:
        v = _slot_values(t, slot, frame, folds)
        idx_cols.append(np.where(np.isnan(v), -1, slot.index))
        val_cols.append(np.where(v == 0.0, ZERO, v))
    for col in t.vocab:
        pos, missing = positions[col] if positions and col in positions else vocab_positions(t, frame, col)
        idx = np.where(pos >= 0, t.vocab_offsets[col] + pos, t.oov_index(col))
        idx_cols.append(np.where(missing, -1, idx))
        val_cols.append(ones)
    for col in spec.columns_of("hash"):
        b = bucket_of(col, _category(frame, col), spec.hash_buckets)
        idx_cols.append(np.where(b >= 0, t.hash_offset + b, -1))
        val_cols.append(ones)
    for cross in spec.crosses:
        b = bucket_of(cross_name(cross), cross_values(frame, cross), spec.cross_buckets)
        idx_cols.append(np.where(b >= 0, t.cross_offset + b, -1))
        val_cols.append(ones)
    # Slots and vocabularies occupy ascending, disjoint index ranges in column order; only hashed columns
    # can collide or come out of order within a row.
    shared = bool(spec.columns_of("hash") or spec.crosses)
    return _to_csr(np.stack(idx_cols, axis=1) if idx_cols else np.empty((n, 0), np.int64),
                   np.stack(val_cols, axis=1) if val_cols else np.empty((n, 0)), t.width, ordered=not shared)


def _to_csr(idx: np.ndarray, val: np.ndarray, width: int, ordered: bool = False) -> Encoded:
    """Rows of (index, value) pairs with -1 for absent to CSR; equal indices in a row are summed (two
    hashed columns in one bucket), indices ascending. ``ordered``: every row's present indices already
    ascend with the column and are distinct (no sort needed)."""
    n = idx.shape[0]
    present = idx >= 0
    if ordered:   # a boolean mask takes the entries row-major (by row, then column): already CSR order
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(present.sum(axis=1), out=indptr[1:])
        return Encoded(indptr, idx[present].astype(np.int32), val[present].astype(np.float64), width)
    rows, cols = np.nonzero(present)  # row-major: by row, then column
    flat_idx, flat_val = idx[rows, cols].astype(np.int64), val[rows, cols]
    order = np.lexsort((flat_idx, rows))
    rows, flat_idx, flat_val = rows[order], flat_idx[order], flat_val[order]
    if len(rows):
        starts = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (flat_idx[1:] != flat_idx[:-1])])
        flat_val = np.add.reduceat(flat_val, starts)
        rows, flat_idx = rows[starts], flat_idx[starts]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return Encoded(indptr, flat_idx.astype(np.int32), flat_val.astype(np.float64), width)


def vocabulary_misses(t: FittedTransform, frame: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per vocabulary column: (rows with a value, rows whose value is out of the vocabulary), the drift
    signal of new data against train. The lookup is the encoder's own."""
    out = {}
    for col in t.vocab:
        pos, missing = vocab_positions(t, frame, col)
        out[col] = (int((~missing).sum()), int((~missing & (pos < 0)).sum()))
    return out


def encode_arrow(t: FittedTransform, batch, out_of_fold: bool = False, weight: Optional[str] = None):
    """An Arrow record batch of raw columns (``row_id``, ``label``, ...) to one of row_id, label (int32),
    [weight (float64)], indices (list<int32>), values (list<float64>): :func:`encode`, as both feature engines
    call it."""
    import pyarrow as pa

    positions, only_vocab = arrow_vocab_positions(t, batch)
    enc = encode(t, batch.drop_columns(only_vocab).to_pandas(), out_of_fold=out_of_fold, positions=positions)
    offsets = pa.array(enc.indptr.astype(np.int32))
    arrays = [batch.column("row_id").cast(pa.int64()), batch.column("label").cast(pa.int32())]
    fields = [("row_id", pa.int64()), ("label", pa.int32())]
    if weight:
        arrays.append(batch.column(weight).cast(pa.float64()))
        fields.append(("weight", pa.float64()))
    arrays += [pa.ListArray.from_arrays(offsets, pa.array(enc.indices, pa.int32())),
               pa.ListArray.from_arrays(offsets, pa.array(enc.values, pa.float64()))]
    fields += [("indices", pa.list_(pa.int32())), ("values", pa.list_(pa.float64()))]
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def arrow_vocab_positions(t: FittedTransform, batch) -> tuple[dict, list[str]]:
    """:func:`vocab_positions` of the text vocabulary columns of the Arrow ``batch``, looked up by Arrow (no
    Python string per row), and the columns no other part of the transform reads (so they need not become
    pandas).

    Arrow's ``index_in`` hashes the whole vocabulary at every call. A vocabulary larger than the batch is
    asked the other way round: the batch's distinct values (Arrow's dictionary encoding) are looked up in
    the vocabulary's own hash table, which pandas builds once. Measured on 65,536 rows: a vocabulary of
    458,377 values took 126 ms with ``index_in`` and 22 ms so; one of 10,000 took 1.9 ms and 2.7 ms."""
    import pyarrow as pa
    import pyarrow.compute as pc

    spec = t.spec
    elsewhere = {s.source for s in t.slots} | set(spec.columns_of("hash")) | {c for x in spec.crosses for c in x}
    positions, only_vocab = {}, []
    for col, vocab in t.vocab.items():
        values = batch.column(col)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not pa.types.is_string(values.type) or vocab.inferred_type not in ("string", "empty"):
            continue
        if len(vocab) > len(values):
            distinct = pc.dictionary_encode(values)
            lookup = np.append(vocab.get_indexer(distinct.dictionary.to_numpy(zero_copy_only=False)), -1)
            found = lookup[distinct.indices.fill_null(-1).to_numpy(zero_copy_only=False)].astype(np.int64)
        else:
            found = (pc.index_in(values, value_set=pa.array(list(vocab), pa.string()))
                     .fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64))
        positions[col] = (found, values.is_null().to_numpy(zero_copy_only=False))
        if col not in elsewhere:
            only_vocab.append(col)
    return positions, only_vocab
