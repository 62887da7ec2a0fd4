"""Pure parsing of raw log records into typed rows, or a precise error (field and reason).

No Spark here: the Spark adapter (:mod:`ctr_pipeline.readers.spark`) feeds lines or Parquet rows to
:func:`parse_record` and gets back one flat tuple per record, in :meth:`Layout.columns` order followed
by the quarantine fields (file, field, reason, text), which are ``None`` for good rows.
"""
from __future__ import annotations

import calendar
import csv
import math
import time as _time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Sequence

from ..errors import InputDataError

LINE_BITS = 40  # row_id = file_index << 40 | line (1-based): 1.1e12 lines a file, 8.3e6 files
MAX_TEXT = 500  # characters of a bad record kept in the quarantine
FIRST_BAD_SHOWN = 5  # bad rows a message names when there are too many
RESERVED = ("row_id", "label", "features", "weight")
_LABELS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


class RowError(Exception):
    """A record that cannot be parsed: ``field`` is the column (or 'record'), ``reason`` says why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Layout:
    """Roles of the columns a reader produces. ``label`` is the source name; the output is 'label'."""

    format: str
    label: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    time: Optional[str] = None
    time_format: str = "%Y-%m-%d %H:%M:%S"
    delimiter: str = "\t"
    drop: tuple[str, ...] = ()
    labeled: bool = True   # False: no label in the data (scoring new logs); the output label is null

    def columns(self) -> list[tuple[str, str]]:
        """(name, Spark SQL type) of the parsed row, before the quarantine fields."""
        if self.format == "libsvm":
            return [("row_id", "bigint"), ("label", "int"), ("indices", "array<int>"), ("values", "array<double>")]
        cols = [("row_id", "bigint"), ("label", "int")]
        cols += [(c, "double") for c in self.numeric]
        cols += [(c, "string") for c in self.categorical]
        if self.time:
            cols.append((self.time, "bigint"))
        return cols

    def declared(self) -> list[str]:
        label = [self.label] if self.labeled else []
        return [*label, *self.numeric, *self.categorical, *([self.time] if self.time else []), *self.drop]


QUARANTINE_COLUMNS = [("_file", "string"), ("_field", "string"), ("_reason", "string"), ("_text", "string")]


def row_id(file_index: int, line: int) -> int:
    """Stable identity of a record: its file's index in the sorted listing and its 1-based line."""
    return (file_index << LINE_BITS) | line


def split_row_id(rid: int) -> tuple[int, int]:
    """Inverse of :func:`row_id`: (file_index, line)."""
    return rid >> LINE_BITS, rid & ((1 << LINE_BITS) - 1)


# ---------------------------------------------------------------------------------------------- values

def parse_label(text: Any, field: str = "label") -> int:
    if isinstance(text, bool):
        return int(text)
    if isinstance(text, (int, float)) and text in (0, 1):
        return int(text)
    label = _LABELS.get(str(text).strip()) if text is not None else None
    if label is None:
        raise RowError(field, f"label must be 0 or 1, got {str(text)[:40]!r}")
    return label


def parse_numeric(text: Any, field: str) -> Optional[float]:
    """Empty, None and NaN mean missing; infinities and non-numbers are errors."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        text = str(text).strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise RowError(field, f"not a number: {text[:40]!r}") from None
    if math.isnan(value):
        return None
    if math.isinf(value):
        raise RowError(field, f"infinite value {text!r}")
    return value


def parse_categorical(text: Any) -> Optional[str]:
    if text is None:
        return None
    text = str(text).strip() if not isinstance(text, str) else text.strip()
    return text or None


def parse_time(text: Any, fmt: str, field: str) -> Optional[int]:
    """Epoch seconds (UTC) from a string in ``fmt`` (strptime) or, with fmt 'epoch', from a number."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if fmt == "epoch":
        value = parse_numeric(text, field)
        return None if value is None else int(value)
    if hasattr(text, "timetuple"):  # a datetime from Parquet
        return int(calendar.timegm(text.timetuple()))
    try:
        return int(calendar.timegm(_time.strptime(str(text).strip(), fmt)))
    except ValueError:
        raise RowError(field, f"time {str(text)[:40]!r} does not match format {fmt!r}") from None


# ---------------------------------------------------------------------------------------------- parsers

class DacParser:
    """Criteo Display Advertising Challenge layout: label, I1-I13, C1-C26, tab-separated, empty = missing
    (unlabeled, as the challenge's test set: I1-I13, C1-C26)."""

    def __init__(self, layout: Layout):
        self.layout = layout
        first = 1 if layout.labeled else 0
        self.width = 39 + first
        self.num_pos = [(first - 1 + int(c[1:]), c) for c in layout.numeric]          # I1 is field 1
        self.cat_pos = [(first + 12 + int(c[1:]), c) for c in layout.categorical]    # C1 is field 14

    def parse(self, line: str) -> tuple:
        fields = line.rstrip("\r\n").split(self.layout.delimiter)
        if len(fields) != self.width:
            raise RowError("record", f"expected {self.width} fields, found {len(fields)}")
        out = [parse_label(fields[0]) if self.layout.labeled else None]
        out += [parse_numeric(fields[i], name) for i, name in self.num_pos]
        out += [parse_categorical(fields[i]) for i, _ in self.cat_pos]
        return tuple(out)


class CsvParser:
    """CSV with a header: columns found by name; quoted fields allowed, one record per line."""

    def __init__(self, layout: Layout, header: Sequence[str]):
        self.layout = layout
        self.header = list(header)
        pos = {name: i for i, name in enumerate(self.header)}
        self.width = len(self.header)
        self.label_pos = pos[layout.label] if layout.labeled else None
        self.num_pos = [(pos[c], c) for c in layout.numeric]
        self.cat_pos = [pos[c] for c in layout.categorical]
        self.time_pos = pos[layout.time] if layout.time else None

    def split(self, line: str) -> list[str]:
        line = line.rstrip("\r\n")
        if '"' in line:
            return next(csv.reader([line], delimiter=self.layout.delimiter))
        return line.split(self.layout.delimiter)

    def parse(self, line: str) -> tuple:
        fields = self.split(line)
        if len(fields) != self.width:
            raise RowError("record", f"expected {self.width} fields, found {len(fields)}")
        out = [None if self.label_pos is None else parse_label(fields[self.label_pos], self.layout.label)]
        out += [parse_numeric(fields[i], name) for i, name in self.num_pos]
        out += [parse_categorical(fields[i]) for i in self.cat_pos]
        if self.time_pos is not None:
            out.append(parse_time(fields[self.time_pos], self.layout.time_format, self.layout.time))
        return tuple(out)


class LibsvmParser:
    """svmlight text: ``label index:value ...``; indices are kept as given (sorted, no duplicates)."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def parse(self, line: str) -> tuple:
        line = line.split("#", 1)[0].strip()
        if not line:
            raise RowError("record", "empty line")
        parts = line.split()
        label = parse_label(parts[0])
        pairs = []
        for token in parts[1:]:
            if token.startswith("qid:"):
                continue
            idx, sep, val = token.partition(":")
            if not sep or not idx.isdigit():
                raise RowError("record", f"expected index:value, got {token[:40]!r}")
            value = parse_numeric(val, f"feature {idx}")
            pairs.append((int(idx), 0.0 if value is None else value))
        pairs.sort()
        for (a, _), (b, _) in zip(pairs, pairs[1:]):
            if a == b:
                raise RowError(f"feature {a}", "index appears twice")
        return (label, [p[0] for p in pairs], [p[1] for p in pairs])


class RecordParser:
    """Parquet rows (dicts or Rows) validated like text, columns by name."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def parse(self, record: Any) -> tuple:
        get = record.__getitem__
        lay = self.layout
        out = [parse_label(get(lay.label), lay.label) if lay.labeled else None]
        out += [parse_numeric(get(c), c) for c in lay.numeric]
        out += [parse_categorical(get(c)) for c in lay.categorical]
        if lay.time:
            out.append(parse_time(get(lay.time), lay.time_format, lay.time))
        return tuple(out)


def check_header(header: Sequence[str], layout: Layout, file: str) -> None:
    """Raise naming the file when a declared column is absent or a present column is undeclared."""
    present = list(header)
    dupes = sorted({c for c in present if present.count(c) > 1})
    if dupes:
        raise InputDataError(f"{file}: header names {', '.join(dupes)} more than once")
    missing = [c for c in layout.declared() if c not in present]
    if missing:
        raise InputDataError(f"{file}: declared column(s) {', '.join(missing)} not in the header "
                             f"({', '.join(present[:12])}{', ...' if len(present) > 12 else ''}); "
                             "fix input.label / input.numeric / input.categorical / input.time / input.drop")
    undeclared = [c for c in present if c not in layout.declared()]
    if undeclared:
        raise InputDataError(f"{file}: column(s) {', '.join(undeclared)} are neither used nor dropped; declare "
                             "them in input.numeric / input.categorical or list them in input.drop")


def parse_record(parser: Any, file_index: int, file_name: str, line: int, payload: Any,
                 width: int) -> tuple:
    """One output tuple: parsed columns + (None,)*4, or Nones + (file, field, reason, text) when bad.

    ``width`` is the number of parsed columns after row_id (len(Layout.columns()) - 1).
    """
    rid = row_id(file_index, line)
    try:
        return (rid, *parser.parse(payload), None, None, None, None)
    except RowError as err:
        text = payload if isinstance(payload, str) else repr(payload)
        return (rid, *([None] * width), file_name, err.field, err.reason, text.rstrip("\r\n")[:MAX_TEXT])


def parse_partition(parsers: Sequence[Any], width: int, file_names: Sequence[str],
                    records: Iterable[tuple[int, int, Any]]) -> Iterator[tuple]:
    """Parse ``(file_index, line, payload)`` records (a Spark partition) with :func:`parse_record`.

    ``parsers[i]`` parses file i (CSV files may order their columns differently).
    """
    for file_index, line, payload in records:
        yield parse_record(parsers[file_index], file_index, file_names[file_index], line, payload, width)


# ---------------------------------------------------------------------------------------------- whole-input checks

@dataclass(frozen=True)
class BadGroup:
    """The quarantined rows of one (file, field): how many, and the first one's line and reason."""

    file: str
    field: str
    rows: int
    line: int
    reason: str


def column_problem(groups: Sequence[BadGroup], layout: Layout, rows_of: dict) -> Optional[str]:
    """Why the input must stop rather than quarantine rows, or None: any label that is not 0/1 (the label
    column is wrong, e.g. click counts), or a numeric column that is mostly not numbers in a file
    (``rows_of``: rows read per file name)."""
    ordered = sorted(groups, key=lambda g: (g.file, g.line, g.field))
    for g in ordered:
        if g.field in {layout.label, "label"}:
            return (f"{g.file}: label column {layout.label!r} has values other than 0/1 on {g.rows:,} row(s) "
                    f"(first: line {g.line}, {g.reason}); fix input.label or the data")
    if layout.format == "libsvm":
        return None
    for g in ordered:
        if g.field in layout.numeric and g.rows > 0.5 * rows_of.get(g.file, 0):
            return (f"{g.file}: numeric column {g.field!r} is mostly not numbers ({g.rows:,} of {rows_of[g.file]:,} "
                    f"rows; first line {g.line}: {g.reason}); declare it in input.categorical or list it in "
                    "input.drop")
    return None


def too_many_bad(bad: int, total: int, first: Sequence[tuple], max_bad_share: float) -> Optional[str]:
    """The message when the malformed share exceeds ``input.max_bad_share`` (``first``: (file, line, field,
    reason) of the first bad rows by row id), else None."""
    if not bad or bad / total <= max_bad_share:
        return None
    shown = "; ".join(f"{file} line {line}: {field}: {reason}" for file, line, field, reason in first)
    return (f"{bad:,} of {total:,} input rows are malformed ({bad / total:.2%} > input.max_bad_share "
            f"{max_bad_share:.2%}); first: {shown}")


def unreadable_message(unreadable: Sequence[tuple[str, str]]) -> str:
    """The message for compressed input files that cannot be read to their end: (file, reason) each."""
    shown = "; ".join(f"{name} ({reason})" for name, reason in unreadable[:5])
    return (f"{len(unreadable)} input file(s) cannot be read to their end, truncated or corrupt: {shown}. The run "
            "stopped rather than drop their rows (input.max_bad_share counts malformed lines, not unreadable "
            "files): fetch them again, or move them out of the input")
