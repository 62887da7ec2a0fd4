"""Text input parsed in the JVM: Spark's text reader, line numbers from split offsets, typed columns by
native expressions; only the lines a strict check cannot vouch for go through the pure Python parser.

Row ids are the Python path's (file index << 40 | 1-based line). Spark's text scan reads each file in
blocks (a gzip file is one block); ``_metadata.file_block_start`` names the block of every line and
``monotonically_increasing_id`` numbers lines consecutively within a task's slice of a block, so one
cheap counting pass gives every block's first line, and the parse pass adds it.

The fast path takes a line only when every field is plainly valid: a label of exactly ``0`` or ``1``,
numbers written as ``-?digits[.digits]`` (up to 300 characters, so no overflow) or empty, categories of
printable ASCII without edge spaces or empty, and a time in ``YYYY-MM-DD HH:MM:SS`` (or digits for
``epoch``). Everything else (quoted CSV fields, exponents, odd whitespace, non-ASCII values, wrong
field counts, bad values) goes to :func:`ctr_pipeline.readers.core.parse_partition`, which gives the
same values or the same quarantine reasons as before. Both paths produce the same rows.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence
from urllib.parse import unquote

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from .core import LINE_BITS, QUARANTINE_COLUMNS, Layout, parse_partition

log = logging.getLogger("ctr_pipeline.readers")

FAST_TIME_FORMATS = ("epoch", "%Y-%m-%d %H:%M:%S")


def supported(layout: Layout, positions: Optional[Sequence[dict]]) -> Optional[str]:
    """Why the JVM path cannot read this input (None when it can)."""
    if layout.format not in ("criteo_dac", "csv"):
        return f"format {layout.format}"
    if len(layout.delimiter) != 1 or ord(layout.delimiter) > 0xff:
        return f"delimiter {layout.delimiter!r}"
    if layout.time and layout.time_format not in FAST_TIME_FORMATS:
        return f"time_format {layout.time_format!r}"
    if positions is not None and any(p != positions[0] for p in positions[1:]):
        return "CSV files with different column orders"
    return None


def _lines(spark: SparkSession, uris: Sequence[str]) -> DataFrame:
    return (spark.read.text(list(uris))
            .select("value", F.col("_metadata.file_path").alias("_path"),
                    F.col("_metadata.file_block_start").alias("_block"),
                    F.monotonically_increasing_id().alias("_mid")))


def _block_bases(spark: SparkSession, lines: DataFrame, uris: Sequence[str]):
    """((_path, _block, _base) with row_id = _base + _mid for every line, blocks, lines), or None if a path
    cannot be matched.

    A block is read by one task, its lines consecutive in ``_mid``; blocks of a file are in file order."""
    index = {uri: i for i, uri in enumerate(uris)}
    blocks = (lines.groupBy("_path", "_block")
              .agg(F.count(F.lit(1)).alias("n"), F.min("_mid").alias("first")).collect())
    by_file: dict[str, list] = {}
    for b in blocks:
        by_file.setdefault(b["_path"], []).append(b)
    rows = []
    for path, parts in by_file.items():
        fi = index.get(unquote(path), index.get(path))
        if fi is None:
            log.warning("input: the text reader named %s, which is not in the listing; parsing in Python", path)
            return None
        line = 1
        for b in sorted(parts, key=lambda b: b["_block"]):
            rows.append((path, b["_block"], (fi << LINE_BITS) + line - b["first"]))
            line += b["n"]
    lines_read = sum(b["n"] for b in blocks)
    return spark.createDataFrame(rows, "_path string, _block long, _base long"), len(blocks), lines_read


def line_pattern(layout: Layout, positions: dict, width: int) -> str:
    """One Java regex a whole line matches when every field is plainly valid (see the module doc).

    Checking the line with one regex keeps Spark from repeating the split per field in the filter."""
    d = layout.delimiter
    banned = "".join(f"\\x{ord(c):02x}" for c in (d + ('"' if layout.format == "csv" else "")))
    inside = [c for c in d + ('"' if layout.format == "csv" else "") if 0x20 <= ord(c) <= 0x7e]
    exclude = "&&[^" + "".join(f"\\x{ord(c):02x}" for c in inside) + "]" if inside else ""
    edge, inner = f"[\\x21-\\x7e{exclude}]", f"[\\x20-\\x7e{exclude}]"
    number = r"(-?[0-9]{1,300}(\.[0-9]+)?)?"   # no overflow to infinity
    category = f"({edge}({inner}*{edge})?)?"
    datetime = r"([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])?"
    kinds = {layout.label: "(0|1)", **{c: number for c in layout.numeric},
             **{c: category for c in layout.categorical}}
    if layout.time:
        kinds[layout.time] = number if layout.time_format == "epoch" else datetime
    anything = f"[^{banned}]*"
    by_index = {i: name for name, i in positions.items()}
    fields = [kinds.get(by_index.get(i), anything) for i in range(width)]
    return "^" + f"\\x{ord(d):02x}".join(fields) + "$"


def _typed(fields: Column, layout: Layout, pos: dict) -> tuple[list[Column], Column]:
    """(typed columns after row_id, a check the line regex cannot make) for the split ``fields`` of a
    line that matches :func:`line_pattern`."""
    def at(name: str) -> Column:
        return fields.getItem(pos[name])

    cols = [at(layout.label).cast("int").alias("label")]
    cols += [F.when(at(c) != "", at(c).cast("double")).alias(c) for c in layout.numeric]
    cols += [F.when(at(c) != "", at(c)).alias(c) for c in layout.categorical]
    ok = F.lit(True)
    if layout.time:
        s = at(layout.time)
        if layout.time_format == "epoch":
            value = s.cast("double").cast("bigint")
        else:
            parts = [s.substr(start, length).cast("int") for start, length in ((1, 4), (6, 2), (9, 2), (12, 2),
                                                                                (15, 2), (18, 2))]
            stamp = F.make_timestamp(*parts, F.lit("UTC"))
            ok = ok & ((s == "") | stamp.isNotNull())          # e.g. February 30th: let Python say why
            value = F.unix_seconds(stamp)
        cols.append(F.when(s != "", value).alias(layout.time))
    return cols, ok


def parse_text(spark: SparkSession, layout: Layout, uris: Sequence[str], names: Sequence[str],
               parsers: Sequence, width: int, positions: dict, columns: list[tuple[str, str]],
               skip_header: bool, rows_per_partition: int = 250_000) -> Optional[DataFrame]:
    """Every line of ``uris`` parsed: ``columns`` (the layout's, then the quarantine fields), or None when
    the files cannot be matched to the listing (the caller parses in Python then).

    ``positions`` maps a column name to its field index; ``width`` is the field count of a record.
    """
    lines = _lines(spark, uris)
    found = _block_bases(spark, lines, uris)
    if found is None:
        return None
    bases, blocks, lines_read = found
    numbered = (lines.join(F.broadcast(bases), ["_path", "_block"])
                .select((F.col("_base") + F.col("_mid")).alias("row_id"), "value"))
    partitions = max(spark.sparkContext.defaultParallelism, -(-lines_read // rows_per_partition))
    plain = F.col("value").rlike(line_pattern(layout, positions, width))
    if blocks < partitions:   # e.g. one gzip file is one block: spread the raw lines before parsing them
        # The check reads spark_partition_id (nondeterministic, always >= 0), so Spark cannot push it below
        # the shuffle into the one-task scan: it runs on every task.
        numbered = (numbered.repartition(partitions, "row_id")
                    .select("row_id", "value", F.spark_partition_id().alias("_task")))
        plain = plain & (F.col("_task") >= 0)
    if skip_header:
        numbered = numbered.filter(F.col("row_id").bitwiseAND((1 << LINE_BITS) - 1) != 1)
    # Lines are checked by one regex; the split is computed once per line in its own projection (Spark
    # keeps a projection apart when an expensive expression would otherwise be repeated per field).
    checked = numbered.select("row_id", "value", plain.alias("_plain"))
    split = checked.select("row_id", "value", "_plain",
                           F.split(F.col("value"), "\\Q" + layout.delimiter + "\\E", -1).alias("_fields"))
    typed, extra = _typed(F.col("_fields"), layout, positions)
    flagged = split.select("row_id", "value", *typed, (F.col("_plain") & extra).alias("_ok"))
    quarantine = [F.lit(None).cast(tp).alias(name) for name, tp in QUARANTINE_COLUMNS]
    fast = flagged.filter(F.col("_ok")).select("row_id", *[c for c, _ in columns[1:-len(QUARANTINE_COLUMNS)]],
                                                *quarantine)
    mask = (1 << LINE_BITS) - 1
    width_out = len(columns) - len(QUARANTINE_COLUMNS) - 1
    slow_records = (flagged.filter(~F.col("_ok"))
                    .select(F.shiftright("row_id", LINE_BITS).cast("int"), F.col("row_id").bitwiseAND(mask), "value")
                    .rdd.mapPartitions(lambda recs: parse_partition(parsers, width_out, names, recs)))
    ddl = ", ".join(f"`{name}` {tp}" for name, tp in columns)
    slow = spark.createDataFrame(slow_records, schema=ddl, verifySchema=False)
    return fast.unionByName(slow)
