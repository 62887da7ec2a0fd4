"""Spark adapter of the readers: list input files, parse them, quarantine bad rows.

Delimited text (Criteo DAC, CSV) goes through :mod:`.arrow` (Spark's text scan, Arrow's CSV parser in
the Python workers, the pure core for any line it cannot vouch for). Other layouts become
``(file_index, line, payload)`` records (line numbers from ``zipWithIndex``, so messages name file and
line), parsed by :func:`ctr_pipeline.readers.core.parse_partition`. Either way one DataFrame holds good
rows and quarantined rows side by side; :func:`read_input` splits them.
"""
from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from typing import Any, Optional

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..config import resolved_columns
from ..errors import InputDataError
from ..failures import corrupt_compressed
from ..schema import Config
from ..spark import temporary_conf
from . import arrow
from .core import (FIRST_BAD_SHOWN, LINE_BITS, QUARANTINE_COLUMNS, RESERVED, BadGroup, CsvParser, DacParser, Layout,
                   LibsvmParser, RecordParser, check_header, column_problem, parse_partition, too_many_bad,
                   unreadable_message)


@dataclass(frozen=True)
class InputFile:
    uri: str
    size: int

    @property
    def display(self) -> str:
        return self.uri[len("file:"):] if self.uri.startswith("file:") else self.uri


@dataclass
class InputReport:
    """Good rows (read from the cache of parsed rows: call :meth:`release` when done) and what was found on
    the way. ``good`` is a DataFrame, or a pyarrow Table when the driver read the input
    (:mod:`.local`)."""

    good: Any
    files: list[InputFile]
    rows_read: int
    rows_bad: int
    num_features: Optional[int] = None
    cached: Optional["KeptRows"] = None

    def release(self) -> None:
        """Drop the kept rows behind :attr:`good` (and ``good``); a second call does nothing."""
        if self.cached is not None:
            self.cached.release()
        self.cached = self.good = None

    def summary(self) -> dict[str, Any]:
        return {"files": [{"path": f.display, "bytes": f.size} for f in self.files],
                "rows_read": self.rows_read, "rows_good": self.rows_read - self.rows_bad,
                "rows_quarantined": self.rows_bad, "num_features": self.num_features}


def layout_for(cfg: Config, labeled: bool = True) -> Layout:
    """The column layout a config asks for, with the criteo_dac defaults filled in; ``labeled=False`` for
    logs without the label (criteo_dac: the 39 fields of the challenge's test set; csv / parquet: no
    ``input.label`` column), read only to be scored."""
    inp = cfg.input
    numeric, categorical = resolved_columns(cfg)
    delimiter = inp.delimiter or ("\t" if inp.format == "criteo_dac" else ",")
    label = "label" if inp.format in ("criteo_dac", "libsvm") else inp.label
    layout = Layout(inp.format, label, tuple(numeric), tuple(categorical), inp.time, inp.time_format,
                    delimiter, tuple(inp.drop), labeled=labeled)
    clash = [c for c in (*layout.numeric, *layout.categorical, *([inp.time] if inp.time else [])) if c in RESERVED]
    if clash:
        raise InputDataError(f"input columns {', '.join(clash)} use reserved names ({', '.join(RESERVED)}); "
                             "rename them in the data or list them in input.drop")
    return layout


def list_input_files(spark: SparkSession, uri: str) -> list[InputFile]:
    """Files matching ``uri`` (file, directory or glob; any Hadoop file system), sorted by path.

    Names starting with ``_`` or ``.`` (``_SUCCESS``, ``.crc``) are skipped, as Spark does. A local path
    is listed by Python (:func:`.local.local_files`, no JVM), anything else by Hadoop's file system.
    """
    from .local import local_files

    files = local_files(uri)
    if files is None:
        files = hadoop_files(spark, uri)
    visible = [InputFile(p, n) for p, n in files if not p.rsplit("/", 1)[-1].startswith(("_", "."))]
    if not visible:
        raise InputDataError(f"{uri}: no input files found (check input.path or --input)")
    return sorted(visible, key=lambda f: f.uri)


def hadoop_files(spark: SparkSession, uri: str) -> list[tuple[str, int]]:
    """(URI, size) of every file Hadoop's file system lists for ``uri``: a file, every file under a
    directory, the matches of a glob."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    files = []
    for status in fs.globStatus(path) or []:
        if status.isDirectory():
            it = fs.listFiles(status.getPath(), True)
            while it.hasNext():
                st = it.next()
                files.append((st.getPath().toString(), st.getLen()))
        else:
            files.append((status.getPath().toString(), status.getLen()))
    return files


def _first_line(spark: SparkSession, f: InputFile) -> str:
    if f.uri.startswith("file:"):
        opener = gzip.open if f.uri.endswith(".gz") else open
        with opener(f.display, "rt", encoding="utf-8", errors="replace") as fh:
            return fh.readline()
    first = spark.sparkContext.textFile(f.uri).take(1)
    return first[0] if first else ""


def _text_records(spark: SparkSession, files: list[InputFile], skip_header: bool):
    sc = spark.sparkContext
    rdds = []
    for i, f in enumerate(files):
        rdd = sc.textFile(f.uri).zipWithIndex().map(lambda t, i=i: (i, t[1] + 1, t[0]))
        if skip_header:
            rdd = rdd.filter(lambda r: r[1] != 1)
        rdds.append(rdd)
    return sc.union(rdds)


def _parquet_records(spark: SparkSession, files: list[InputFile], layout: Layout):
    rdds = []
    for i, f in enumerate(files):
        df = spark.read.parquet(f.uri)
        check_header(df.columns, layout, f.display)
        used = [c for c in layout.declared() if c not in layout.drop]
        rdds.append(df.select(*used).rdd.zipWithIndex().map(lambda t, i=i: (i, t[1] + 1, t[0].asDict())))
    return spark.sparkContext.union(rdds)


@dataclass(frozen=True)
class InputSource:
    """The input as listed and checked before any row is parsed: its layout, its files (sorted by path), a
    parser per file and, for CSV, each file's header positions."""

    cfg: Config
    layout: Layout
    files: list[InputFile]
    parsers: list
    headers: Optional[list[dict]]

    @property
    def positions(self) -> dict:
        """Field index of each column in a delimited text record."""
        return self.headers[0] if self.headers else dac_positions(self.layout.labeled)

    @property
    def names(self) -> list[str]:
        return [f.display for f in self.files]

    def text_plan(self, bases: Optional[dict] = None) -> Optional["arrow.TextPlan"]:
        """What the Arrow parser needs, or None when it cannot read this input (:func:`arrow.supported`)."""
        if arrow.supported(self.layout, self.headers) is not None:
            return None
        return arrow.text_plan(self.layout, [f.uri for f in self.files], self.names, self.parsers, self.positions,
                               self.layout.columns() + QUARANTINE_COLUMNS, self.headers is not None, bases)


def open_input(spark: SparkSession, cfg: Config, labeled: bool = True) -> InputSource:
    """List ``cfg.input`` and check its layout and CSV headers (see :func:`read_input`)."""
    if not cfg.input.path:
        raise InputDataError("no input: pass --input PATH or set input.path in the config file")
    if not labeled and cfg.input.format == "libsvm":
        raise InputDataError(f"{cfg.input.path}: unlabeled libsvm input is not supported (every svmlight line "
                             "starts with its label)")
    layout = layout_for(cfg, labeled)
    files = list_input_files(spark, cfg.input.path)
    headers = None
    if layout.format == "parquet":
        parsers = [RecordParser(layout)] * len(files)
    elif layout.format == "csv":
        parsers, headers = [], []
        for f in files:
            header = _split_header(_first_line(spark, f), layout.delimiter)
            check_header(header, layout, f.display)
            parsers.append(CsvParser(layout, header))
            headers.append({name: i for i, name in enumerate(header)})
    else:
        parsers = [DacParser(layout) if layout.format == "criteo_dac" else LibsvmParser(layout)] * len(files)
    return InputSource(cfg, layout, files, parsers, headers)


def parse_input(spark: SparkSession, source: InputSource) -> DataFrame:
    """All records parsed: the layout's columns plus the quarantine columns (null on good rows)."""
    layout, files, parsers = source.layout, source.files, source.parsers
    columns = layout.columns() + QUARANTINE_COLUMNS
    width = len(layout.columns()) - 1
    if source.text_plan() is not None:
        parsed = arrow.parse_text(spark, source)
        if parsed is not None:
            return parsed
    if layout.format == "parquet":
        records = _parquet_records(spark, files, layout)
    else:
        records = _text_records(spark, files, skip_header=layout.format == "csv")
    ddl = ", ".join(f"`{name}` {tp}" for name, tp in columns)
    names = source.names
    parsed = records.mapPartitions(lambda recs: parse_partition(parsers, width, names, recs))
    return spark.createDataFrame(parsed, schema=ddl, verifySchema=False)


def dac_positions(labeled: bool = True) -> dict[str, int]:
    """Field index of every Criteo DAC column: label, I1-I13, C1-C26 (no label when unlabeled)."""
    names = ["label"] if labeled else []
    names += [*[f"I{i}" for i in range(1, 14)], *[f"C{i}" for i in range(1, 27)]]
    return {name: i for i, name in enumerate(names)}


def _split_header(line: str, delimiter: str) -> list[str]:
    return [h.strip() for h in next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter))]


COMPRESSED_RATIO = 4                  # text bytes per compressed byte, to size partitions of compressed input
PARTITION_BYTES = 128 * 1024 * 1024   # input text per partition of the cached rows (Spark's own split size)
CHECKPOINT_HEAP_SHARE = 8             # a local checkpoint for input text up to 1/8 of the driver's heap


def text_size(spark: SparkSession, files: list[InputFile]) -> int:
    """Estimated bytes of text in ``files``: files with a Hadoop codec count COMPRESSED_RATIO times their size."""
    kinds = arrow.codecs(spark, [f.uri for f in files])
    return sum(f.size * (1 if kinds[f.uri] == "plain" else COMPRESSED_RATIO) for f in files)


def partitions_for(spark: SparkSession, text_bytes: int, scan_partitions: int) -> int:
    """Partitions to spread parsed rows over: at least one per core and one per PARTITION_BYTES of text,
    and never fewer than the scan has."""
    return max(spark.sparkContext.defaultParallelism, -(-text_bytes // PARTITION_BYTES), scan_partitions)


@dataclass
class KeptRows:
    """Parsed rows kept for the passes that follow: a local checkpoint or a cached DataFrame."""

    df: DataFrame
    checkpointed: bool

    def release(self) -> None:
        """Drop the kept rows, waiting for it: a removal still in flight when the CLI stops the session
        right after the stage printed RejectedExecutionException stack traces (seen once, after `sample`)."""
        if not self.checkpointed:
            self.df.unpersist(blocking=True)
            return
        plan = self.df._jdf.queryExecution().analyzed()   # a LogicalRDD over the checkpointed RDD
        if plan.nodeName() == "LogicalRDD":
            plan.rdd().unpersist(True)


def keep_rows(spark: SparkSession, parsed: DataFrame, text_bytes: int) -> tuple[DataFrame, KeptRows]:
    """Keep the parsed rows for the passes that follow (materialised by the first of them).

    With a local master (one JVM: no executor can be lost without the driver) and input text of at most
    1 / CHECKPOINT_HEAP_SHARE of the driver's heap, the rows are kept as a local checkpoint: row blocks in
    the block manager, built in about half the time of Spark SQL's columnar cache (1M demo rows, parse and
    spread included: 8.0 s against 17.1 s; read_input 17-19 s against 25 s). Row blocks take several
    times the columnar cache's memory and spill beyond the heap, so larger inputs are cached. At 10M demo
    rows (4 GB heap) timing did not decide it: the sample stage alone took 237 s checkpointed and 217 s
    cached, inside whole runs 211 s and 239 s. On a cluster the rows are cached too, so that a lost
    executor's part is recomputed from the lineage, which a local checkpoint cannot do.
    """
    heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
    if spark.sparkContext.master.startswith("local") and text_bytes * CHECKPOINT_HEAP_SHARE <= heap:
        kept = parsed.localCheckpoint(eager=False)
        return kept, KeptRows(kept, True)
    parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
    return parsed, KeptRows(parsed, False)


def read_input(spark: SparkSession, cfg: Config, quarantine_dir: str, labeled: bool = True,
               source: Optional[InputSource] = None) -> InputReport:
    """Read and validate ``cfg.input``; write bad rows as JSON lines to ``quarantine_dir``.

    Parsed rows are kept (:func:`keep_rows`), spread by hash of row_id over :func:`partitions_for`
    partitions when the scan has fewer (e.g. one gzip file is one task) so that later passes run in
    parallel. The shuffle comes before the rows are kept, so they are kept once (measured at 1M demo rows:
    a second cache of the spread rows cost 18.8 s on top of the 23.7 s parse and first cache).

    Fails (InputDataError naming the first bad lines) when the malformed share exceeds
    ``input.max_bad_share``. Call ``release()`` on the report when done with the good rows. Unlabeled
    input (``labeled=False``, see :func:`layout_for`) gets a null label. ``source``: the input already opened
    (:func:`open_input`).
    """
    source = source or open_input(spark, cfg, labeled)
    layout, files = source.layout, source.files
    parsed = parse_input(spark, source)
    scan = parsed.rdd.getNumPartitions()
    text_bytes = text_size(spark, files)
    wanted = partitions_for(spark, text_bytes, scan)
    if scan < wanted:
        parsed = parsed.repartition(wanted, "row_id")
    kept = None
    try:   # the first pass reads every file: an unreadable one fails it
        parsed, kept = keep_rows(spark, parsed, text_bytes)
        # A cache is built uncompressed: random ids compress little (1M demo rows: 166 MB against 133 MB)
        # and the compression pass cost more than it saves later (read_input 12.8 s against 14.0 s).
        with temporary_conf(spark, "spark.sql.inMemoryColumnarStorage.compressed", "false"):
            counts = {r["bad"]: r["count"] for r in
                      parsed.groupBy(F.col("_reason").isNotNull().alias("bad")).count().collect()}
    except Exception as exc:
        if kept is not None:
            kept.release()
        unreadable = unreadable_files(spark, files) if corrupt_compressed(str(exc)) else []
        if unreadable:
            raise InputDataError(unreadable_message(unreadable)) from None
        raise
    total, bad = sum(counts.values()), counts.get(True, 0)
    if total == 0:
        kept.release()
        raise InputDataError(f"{cfg.input.path}: input is empty (no data rows in {len(files)} file(s))")
    bad_rows = parsed.filter(F.col("_reason").isNotNull())
    line = F.col("row_id").bitwiseAND((1 << LINE_BITS) - 1)
    if bad:
        per_file = rows_per_file(parsed, files) if layout.format != "libsvm" else {}
        problem = column_problem(bad_groups(bad_rows), layout, per_file)
        if problem is None:
            first = (bad_rows.orderBy("row_id").limit(FIRST_BAD_SHOWN)
                     .select("_file", line, "_field", "_reason").collect())
            problem = too_many_bad(bad, total, [tuple(r) for r in first], cfg.input.max_bad_share)
        if problem is not None:
            kept.release()
            raise InputDataError(problem)
        (bad_rows.select(F.col("_file").alias("file"), line.alias("line"),
                         F.col("_field").alias("field"), F.col("_reason").alias("reason"),
                         F.col("_text").alias("text"))
         .coalesce(1).write.json(quarantine_dir))
    good = parsed.filter(F.col("_reason").isNull()).drop(*[c for c, _ in QUARANTINE_COLUMNS])
    num_features = None
    if layout.format == "libsvm":
        good, num_features = _libsvm_vectors(good, cfg.input.num_features, cfg.source_of("input.num_features"))
    return InputReport(good, files, total, bad, num_features, cached=kept)


def unreadable_files(spark: SparkSession, files: list[InputFile]) -> list[tuple[str, str]]:
    """(file, error) for each compressed input file that its codec cannot read to the end: each is read
    through Hadoop's codec, as Spark's scan reads it, into a null stream (called only after a failure)."""
    from py4j.protocol import Py4JJavaError

    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    factory = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf)
    bad = []
    for f in files:
        path = jvm.org.apache.hadoop.fs.Path(f.uri)
        codec = factory.getCodec(path)
        if codec is None:
            continue
        try:
            stream = codec.createInputStream(path.getFileSystem(conf).open(path))
            jvm.org.apache.hadoop.io.IOUtils.copyBytes(stream, jvm.org.apache.commons.io.output.NullOutputStream(),
                                                       1 << 16, True)
        except Py4JJavaError as exc:
            bad.append((f.display, str(exc.java_exception.toString())))
    return bad


def bad_groups(bad_rows: DataFrame) -> list[BadGroup]:
    """The quarantined rows per (file, field), with the first one's line and reason (one Spark job)."""
    line = F.col("row_id").bitwiseAND((1 << LINE_BITS) - 1)
    groups = (bad_rows.groupBy("_file", "_field")
              .agg(F.count(F.lit(1)).alias("n"), F.min(F.struct(line.alias("line"), F.col("_reason"))).alias("first"))
              .collect())
    return [BadGroup(g["_file"], g["_field"], g["n"], g["first"]["line"], g["first"]["_reason"]) for g in groups]


def rows_per_file(parsed: DataFrame, files: list[InputFile]) -> dict[str, int]:
    """Rows read (good and bad) per file name."""
    per_file = {r["fi"]: r["count"] for r in parsed.groupBy(
        F.shiftright("row_id", LINE_BITS).alias("fi")).count().collect()}
    return {f.display: per_file.get(i, 0) for i, f in enumerate(files)}


def _libsvm_vectors(df: DataFrame, configured: Optional[int], source: str) -> tuple[DataFrame, int]:
    from pyspark.ml.linalg import SparseVector, VectorUDT

    largest = df.select(F.max(F.array_max("indices"))).first()[0]
    needed = 0 if largest is None else largest + 1
    if configured is not None and configured < needed:
        raise InputDataError(f"{source}: input.num_features is {configured} but the data has index {largest}; "
                             f"set it to at least {needed} or leave it out")
    size = configured or max(needed, 1)
    to_vector = F.udf(lambda idx, val: SparseVector(size, idx, val), VectorUDT())
    return df.select("row_id", "label", to_vector("indices", "values").alias("features")), size
