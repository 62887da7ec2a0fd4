"""Feature Parquet on Spark: write CSR arrays as ML vectors, read them back as ``VectorUDT``.

Spark SQL has no function that builds an ML vector from arrays, and a Python UDF per row would cost
more than the whole transform. A sparse ML vector is stored in Parquet as the struct
``(type tinyint, size int, indices array<int>, values array<double>)``, so the stage writes that struct
natively and :func:`read_features` reads it back with the vector type declared. Downstream stages must
read features with :func:`read_features`.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ctr_pipeline.storage import Location

from .encode import SPARSE

WIDTH_KEY = "ctr_pipeline_width"


def vector_struct(width: int, indices: str = "indices", values: str = "values") -> Column:
    """The stored form of a sparse ML vector built from an index and a value array column."""
    return F.struct(F.lit(SPARSE).cast("byte").alias("type"), F.lit(width).cast("int").alias("size"),
                    F.col(indices).cast("array<int>").alias("indices"),
                    F.col(values).cast("array<double>").alias("values"))


def read_features(spark: SparkSession, path: str) -> DataFrame:
    """Feature Parquet with ``features`` as an ML vector column whose metadata holds the width."""
    from pyspark.ml.linalg import VectorUDT

    raw = spark.read.parquet(path)
    if "features" not in raw.columns:
        raise ValueError(f"{path}: no 'features' column; not the output of the features stage")
    if isinstance(raw.schema["features"].dataType, VectorUDT):
        return raw
    where = Location.of(path)
    if where.is_local:   # the first row's size from the files, without a Spark job
        from .arrow_io import first_size

        width = first_size(where)
    else:
        first = raw.select("features.size").first()
        width = int(first[0]) if first else 0
    fields = [T.StructField("features", VectorUDT(), True, {WIDTH_KEY: width}) if f.name == "features" else f
              for f in raw.schema.fields]
    return spark.read.schema(T.StructType(fields)).parquet(path)


def vector_width(df: DataFrame, column: str = "features") -> int:
    """Width of a vector column from its metadata, or from the first row when there is none."""
    meta = df.schema[column].metadata
    if WIDTH_KEY in meta:
        return int(meta[WIDTH_KEY])
    if "ml_attr" in meta and "num_attrs" in meta["ml_attr"]:
        return int(meta["ml_attr"]["num_attrs"])
    first = df.select(column).first()
    return first[0].size if first else 0


def libsvm_lines(df: DataFrame, weight: bool) -> DataFrame:
    """LIBSVM text lines (1-based indices, ``label[:weight] i:v ...``) from stored feature Parquet read
    *without* the vector type (``features`` as a struct)."""
    pairs = F.transform(F.arrays_zip(F.col("features.indices").alias("i"), F.col("features.values").alias("v")),
                        lambda p: F.concat((p["i"] + 1).cast("string"), F.lit(":"), p["v"].cast("string")))
    head = F.col("label").cast("string")
    if weight:
        head = F.concat(head, F.lit(":"), F.col("weight").cast("string"))
    return df.select(F.rtrim(F.concat_ws(" ", head, F.array_join(pairs, " "))).alias("value"))


def batch_csr(batch, width: int, column: str = "features"):
    """The rows of an Arrow batch of stored feature Parquet (``column`` a struct of type, size, indices,
    values, as :func:`vector_struct` writes it) as a scipy CSR matrix, without copying per row."""
    from scipy.sparse import csr_matrix

    feats = batch.column(column)
    children = dict(zip((f.name for f in feats.type), feats.flatten()))   # flatten() honours slicing
    indices, values = children["indices"], children["values"]
    offsets = indices.offsets.to_numpy()
    return csr_matrix((values.flatten().to_numpy(zero_copy_only=False),
                       indices.flatten().to_numpy(zero_copy_only=False), offsets - offsets[0]),
                      shape=(batch.num_rows, width))


def collect_csr(df: DataFrame, width: int, columns: tuple[str, ...] = ("label",)):
    """The rows of ``df`` on the driver: (CSR matrix of ``features``, {column: numpy array}).

    Each Arrow batch is packed into one binary row (CSR arrays and the columns in numpy's .npz format),
    so the driver receives a few large rows instead of one Python object per row. For sets that fit in
    the driver's memory (about 12 bytes per stored value).
    """
    import io

    import numpy as np
    from scipy.sparse import csr_matrix, vstack

    columns = tuple(dict.fromkeys(columns))

    def pack(batches):
        import pyarrow as pa

        for b in batches:
            if not b.num_rows:
                continue
            m = batch_csr(b, width)
            buf = io.BytesIO()
            np.savez(buf, indptr=m.indptr, indices=m.indices, data=m.data,
                     **{f"col_{c}": b.column(c).to_numpy(zero_copy_only=False) for c in columns})
            yield pa.RecordBatch.from_arrays([pa.array([buf.getvalue()], pa.binary())], names=["npz"])

    parts, cols = [], {c: [] for c in columns}
    for row in df.select(*columns, "features").mapInArrow(pack, "npz binary").collect():
        z = np.load(io.BytesIO(row["npz"]))
        parts.append(csr_matrix((z["data"], z["indices"], z["indptr"]), shape=(len(z["indptr"]) - 1, width)))
        for c in columns:
            cols[c].append(z[f"col_{c}"])
    if not parts:
        return csr_matrix((0, width)), {c: np.empty(0) for c in columns}
    return vstack(parts, format="csr"), {c: np.concatenate(v) for c, v in cols.items()}
