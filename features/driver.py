"""The feature stage in the driver process, without Spark jobs: fit on train and encode every split with
pyarrow, numpy and the pure encoder.

For a local master and a run directory on this machine (the Spark engine's tasks would be processes on
the same cores). It gives the Spark engine's transform and vectors:

- the tallies of categorical values, crosses and target-encoding folds are :mod:`.tally`'s, the same
  integer counts as the Spark engine's;
- the vectors are :func:`.encode.encode_arrow`'s, written as the Spark engine writes them (row_id,
  label, [weight], ``features`` as the stored form of a sparse ML vector), in Spark-style part files;
- the feature summary's distinct counts and quantiles are exact, where Spark's are approximate
  (``approx_count_distinct``, ``percentile_approx``). That is why the ``quantile`` numeric transform, which
  is fitted on those quantiles, stays with the Spark engine.

Measured on the 1M demo rows' sets (2 cores): see the README's Performance section.
"""
from __future__ import annotations

import math
import uuid
from typing import Iterator, Mapping, Optional

import numpy as np
import pandas as pd

from ctr_pipeline.errors import InputDataError
from ctr_pipeline.storage import Location
from ctr_pipeline.threads import ordered_map

from .encode import SPARSE, encode_arrow
from .featuremap import bucket_blocks, named_buckets
from .fit import assemble, quantile_probabilities
from .hashing import CROSS_SEP, fold_of
from .spec import FeatureSpec, cross_name
from .state import FittedTransform, Totals
from .summary import SUMMARY_QUANTILES
from .tally import batch_tally, cross_text, merged_tally

BATCH_ROWS = 65_536     # rows encoded at a time
MEMORY_SHARE = 4        # the driver holds train's columns if they are at most 1/4 of the machine's memory


# ---------------------------------------------------------------------------------------------- when

def driver_problem(spec: FeatureSpec, schema, train_bytes: int, memory: int) -> Optional[str]:
    """Why the driver engine cannot fit and encode these sets, or None. ``schema``: the train split's Arrow
    schema; ``train_bytes``: its rows' size in memory as Arrow (:func:`split_bytes`)."""
    import pyarrow as pa

    quantile = spec.numeric_of("quantile")
    if quantile:
        return (f"column {quantile[0]} uses the quantile transform, which is fitted on Spark's approximate "
                "quantiles")
    texts = [c for c in spec.raw_categorical if c in schema.names]
    texts += [c for cross in spec.crosses for c in cross if c in schema.names]
    for c in dict.fromkeys(texts):
        kind = schema.field(c).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)):
            return f"categorical column {c} is {kind}, which Spark writes as text its own way"
    if train_bytes * MEMORY_SHARE > memory:
        return (f"the train split (about {train_bytes / 2 ** 30:.1f} GiB in memory) is over 1/{MEMORY_SHARE} of this "
                f"machine's {memory / 2 ** 30:.1f} GiB of memory")
    return None


def split_schema(split: Location):
    """The Arrow schema of a local split's Parquet files (of the first part; the writers give every part the
    same)."""
    import pyarrow.parquet as pq

    parts = split.parquet_parts()
    if not parts:
        raise InputDataError(f"{split}: no Parquet part files; re-run the sample stage with --force")
    return pq.read_schema(str(parts[0].path))


def split_bytes(split: Location) -> int:
    """About how much memory a local split's rows take as Arrow: the size per row of its first 10,000 rows
    (read) times the rows in the footers. (The footers' byte sizes are of the encoded pages: 51 MiB for the 1M
    demo's train split, whose Arrow table takes 316 MiB; this estimate gave 316 MiB.)"""
    import pyarrow.parquet as pq

    rows, sample = 0, None
    for f in split.parquet_parts():
        handle = pq.ParquetFile(str(f.path))
        rows += handle.metadata.num_rows
        if sample is None and handle.metadata.num_rows:
            sample = next(handle.iter_batches(batch_size=10_000))
    return 0 if sample is None else int(sample.nbytes / sample.num_rows * rows)


# ---------------------------------------------------------------------------------------------- checks

def check_weight(split: Location, weight: Optional[str]) -> None:
    """As the Spark engine's check: the weight column is present and >= 0 in every row of ``split``."""
    if not weight:
        return
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    nulls = negative = 0
    for f in split.parquet_parts():
        w = pq.read_table(str(f.path), columns=[weight]).column(weight)
        nulls += w.null_count
        negative += int(pc.sum(pc.less(w, 0)).as_py() or 0)
    if nulls or negative:
        raise InputDataError(f"{split}: features.weight column {weight!r} is missing in {nulls:,} row(s) and "
                             f"negative in {negative:,}; weights must be present and >= 0")


# ---------------------------------------------------------------------------------------------- fitting

def read_split(split: Location, columns: list[str], threads: int):
    """The ``columns`` of every row of a local split, as one Arrow table (parts read in threads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = list(ordered_map(lambda f: pq.read_table(str(f.path), columns=columns), split.parquet_parts(), threads))
    return pa.concat_tables(tables) if tables else None


def exact_quantiles(values: np.ndarray, probs) -> dict[float, Optional[float]]:
    """{p: the smallest value with at least p of the values at or below it} (NaN sorts last, as in Spark)."""
    if not len(values):
        return {p: None for p in probs}
    ordered = np.sort(values)
    return {p: float(ordered[max(0, math.ceil(p * len(ordered)) - 1)]) for p in probs}


def _tally_frame(tables: Mapping[str, object], with_fold: bool) -> pd.DataFrame:
    """Tallies per column as one pandas frame (column, value[, fold], n, clicks), as the Spark engine collects
    them."""
    frames = [t.to_pandas().assign(column=name) for name, t in tables.items() if t is not None]
    keys = ["column", "value"] + (["fold"] if with_fold else [])
    if not frames:
        return pd.DataFrame({k: [] for k in [*keys, "n", "clicks"]})
    return pd.concat(frames, ignore_index=True)[[*keys, "n", "clicks"]]


def top_values(tally: pd.DataFrame, k: int) -> tuple[int, int, list]:
    """(non-missing rows, distinct values, top ``k`` (value, n, clicks) by n, then value) of one column."""
    n = tally["n"].to_numpy()
    if len(n) > k:   # only the values with at least the k-th largest count can be in the top k: sort those
        tally = tally[n >= np.partition(n, len(n) - k)[len(n) - k]]
    top = tally.sort_values(["n", "value"], ascending=[False, True], kind="mergesort").head(k)
    return int(n.sum()), len(n), list(zip(top["value"], top["n"], top["clicks"]))


def fit_in_driver(train: Location, spec: FeatureSpec, threads: int, meta: Mapping[str, object]):
    """Fit on the local train split: (transform, summary, feature map), as :func:`.spark_job.fit`."""
    import pyarrow as pa

    numeric = list(spec.raw_numeric) + ([spec.time] if spec.time else [])
    table = read_split(train, list(dict.fromkeys(["row_id", "label", *spec.input_columns()])), threads)
    if table is None or table.num_rows == 0:
        raise InputDataError("features: the train split is empty; nothing to fit")
    label = table.column("label").cast(pa.int64())
    y = label.to_numpy()
    folds = fold_of(table.column("row_id").to_numpy(), spec.folds, spec.seed)
    fold_rows = np.bincount(folds, minlength=spec.folds)
    fold_clicks = np.bincount(folds, weights=y, minlength=spec.folds)
    totals = Totals(int(fold_rows.sum()), int(fold_clicks.sum()), tuple(int(n) for n in fold_rows),
                    tuple(int(c) for c in fold_clicks))

    probs = sorted(set(SUMMARY_QUANTILES) | set(quantile_probabilities(spec.quantile_buckets)))
    numeric_stats: dict[str, tuple] = {}
    for c in numeric:
        column = table.column(c).cast(pa.float64())
        present = column.drop_null().to_numpy()
        at = exact_quantiles(present, probs)
        numeric_stats[c] = (len(present), len(np.unique(present)), {p: at[p] for p in SUMMARY_QUANTILES})

    texts = {c: table.column(c).cast(pa.string()) for c in spec.raw_categorical}   # Spark tallies them as text
    texts.update({cross_name(c): cross_text([table.column(x) for x in c], CROSS_SEP) for c in spec.crosses})
    values = _tally_frame({name: merged_tally([batch_tally(v, label)], False) for name, v in texts.items()}, False)
    per_column = dict(tuple(values.groupby("column", sort=False)))
    empty = values.iloc[0:0]
    tallies = {}
    for c in spec.columns_of("vocab") + tuple(spec.counts):
        mine = per_column.get(c, empty)
        if c in spec.columns_of("vocab") and c not in spec.counts:
            mine = mine[mine["n"] >= spec.min_count]
        else:     # a count table is saved in this order: by value, whatever order Arrow's hash grouping gave
            mine = mine.sort_values("value", kind="mergesort")
        tallies[c] = mine[["value", "n"]].reset_index(drop=True)
    cat_stats = {c: top_values(per_column.get(c, empty), spec.top_values) for c in spec.raw_categorical}
    blocks = bucket_blocks(spec)
    buckets = named_buckets(values, blocks) if blocks else None

    fold_tallies = {}
    if spec.target_encoding:
        fold = pa.array(folds.astype(np.int64))
        got = _tally_frame({c: merged_tally([batch_tally(table.column(c).cast(pa.string()), label, fold)], True)
                            for c in spec.target_encoding}, True)
        for c in spec.target_encoding:
            fold_tallies[c] = got[got["column"] == c][["value", "fold", "n", "clicks"]].reset_index(drop=True)
    del table
    return assemble(spec, totals, numeric_stats, {}, tallies, fold_tallies, cat_stats, buckets, meta)


# ---------------------------------------------------------------------------------------------- encoding

def feature_schema(weighted: bool):
    """The Arrow schema of the feature Parquet: row_id, label, [weight], features (the stored form of a sparse
    ML vector: type, size, indices, values), as the Spark engine writes it."""
    import pyarrow as pa

    vector = pa.struct([pa.field("type", pa.int8(), nullable=False), pa.field("size", pa.int32(), nullable=False),
                        pa.field("indices", pa.list_(pa.int32())), pa.field("values", pa.list_(pa.float64()))])
    return pa.schema([("row_id", pa.int64()), ("label", pa.int32())] + ([("weight", pa.float64())] if weighted else [])
                     + [pa.field("features", vector, nullable=False)])


def vector_batch(encoded, width: int):
    """:func:`.encode.encode_arrow`'s batch with ``indices`` and ``values`` as one ``features`` struct
    (:func:`feature_schema`)."""
    import pyarrow as pa

    n = encoded.num_rows
    schema = feature_schema("weight" in encoded.schema.names)
    vector = schema.field("features").type
    features = pa.StructArray.from_arrays([pa.array(np.full(n, SPARSE, np.int8)), pa.array(np.full(n, width, np.int32)),
                                           encoded.column("indices"), encoded.column("values")],
                                          fields=list(vector))
    return pa.RecordBatch.from_arrays([encoded.column(c) for c in schema.names[:-1]] + [features], schema=schema)


def _encoded_batches(t: FittedTransform, part: Location, columns: list[str], out_of_fold: bool) -> Iterator:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(str(part.path)).iter_batches(batch_size=BATCH_ROWS, columns=columns):
        yield vector_batch(encode_arrow(t, batch, out_of_fold=out_of_fold, weight=t.spec.weight), t.width)


def encode_split(t: FittedTransform, split: Location, out: Location, out_of_fold: bool, threads: int) -> int:
    """Encode every row of the local split ``split`` into feature Parquet in ``out``: one part file per part
    of the split, a few parts at a time in threads, named as Spark names them. Returns the rows written.

    The encoder is pandas and numpy code that mostly holds the GIL; the threads overlap Parquet reads and
    writes with it. On the 1M demo's train split (8 parts), before the Arrow vocabulary lookup: 8.4 s on 2
    threads, 9.4 s on 1, and 8.1 s with 2 spawned worker processes, which were left out (spawning reruns the
    main module: a user's script without a main guard would run again)."""
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys(["row_id", "label", *t.spec.input_columns()]))
    out.mkdir()
    tag = uuid.uuid4()

    def one(item) -> int:
        i, part = item
        rows, writer = 0, None
        try:
            for batch in _encoded_batches(t, part, columns, out_of_fold):
                if writer is None:
                    writer = pq.ParquetWriter(str(out / f"part-{i:05d}-{tag}-c000.snappy.parquet"), batch.schema)
                writer.write_batch(batch)
                rows += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
        return rows

    rows = sum(ordered_map(one, enumerate(split.parquet_parts()), threads))
    if rows == 0:   # as Spark writes an empty set: one file with the schema, so that readers find the columns
        pq.write_table(feature_schema(bool(t.spec.weight)).empty_table(), str(out / f"part-00000-{tag}-c000.snappy.parquet"))
    (out / "_SUCCESS").write_bytes(b"")
    return rows
