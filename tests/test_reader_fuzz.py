"""Bad input, tried systematically: generated Criteo DAC lines through the reader's Arrow path against
the pure Python parser, line by line.

Lines come as Spark's text reader hands them over (no line terminators; bytes that may not be UTF-8).
Each generated line must come out exactly once, with its own row id, either parsed to the same values
as :class:`DacParser` gives or quarantined with the same file, field and reason: nothing dropped,
nothing invented, and the fast path never accepts what the reference parser refuses.
"""
import math

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctr_pipeline.config import build_config
from ctr_pipeline.readers import arrow
from ctr_pipeline.readers.core import LINE_BITS, QUARANTINE_COLUMNS, DacParser, parse_record
from ctr_pipeline.readers.spark import dac_positions, layout_for

PATH, NAME = "file:/logs/day.tsv", "/logs/day.tsv"
NASTY = ["\x00", "\ufeff", "\x7f", "é", "\u2028", " ", '"', "'", ",", "\\", "\x1b", "𝔘"]


def plan():
    layout = layout_for(build_config([]))
    positions = dac_positions(True)
    by_index = {i: name for name, i in positions.items()}
    width = len(positions)
    return arrow.TextPlan(layout, arrow.line_pattern(layout, positions, width),
                          tuple(by_index.get(i, f"_unused{i}") for i in range(width)),
                          tuple(layout.columns() + QUARANTINE_COLUMNS), {PATH: 0}, (NAME,), (DacParser(layout),), {},
                          False)


PLAN = plan()
text_no_newline = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                          max_size=12)
good_label = st.sampled_from(["0", "1"])
odd_label = st.sampled_from(["", "1.0", "-1", "yes", " 1", "2", "01", "\ufeff1", "0\x00", "true"])
good_number = st.one_of(st.just(""), st.integers(-10 ** 6, 10 ** 6).map(str),
                        st.decimals(-10 ** 6, 10 ** 6, places=3, allow_nan=False).map(str))
odd_number = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), text_no_newline,
                       st.sampled_from(["1e5", "-0", ".5", "5.", "+3", "1_000", " 7", "0x1f", "9" * 400, "\x00",
                                        "١٢", "1,5"]))
good_category = st.one_of(st.just(""), st.text(alphabet="0123456789abcdef", min_size=8, max_size=8))
odd_category = st.one_of(st.sampled_from(NASTY), text_no_newline, st.text(alphabet="ab ", min_size=1, max_size=4))


@st.composite
def dac_line(draw) -> bytes:
    """A valid line with a few fields made odd (or none), sometimes a broken record or raw bytes."""
    fields = [draw(good_label), *[draw(good_number) for _ in range(13)], *[draw(good_category) for _ in range(26)]]
    for _ in range(draw(st.integers(0, 2))):
        which = draw(st.sampled_from(["label", "number", "category"]))
        i = 0 if which == "label" else draw(st.integers(1, 13) if which == "number" else st.integers(14, 39))
        fields[i] = draw(odd_label if i == 0 else odd_number if i <= 13 else odd_category)
    kind = draw(st.sampled_from(["plain"] * 6 + ["missing", "extra", "long", "bytes", "empty"]))
    if kind == "missing":
        fields.pop(draw(st.integers(0, len(fields) - 1)))
    elif kind == "extra":
        fields.insert(draw(st.integers(0, len(fields))), draw(good_category))
    elif kind == "long":
        fields[14 + draw(st.integers(0, 25))] = "x" * draw(st.integers(1000, 70_000))
    line = "\t".join(fields).encode("utf-8")
    if kind == "bytes":                                          # not UTF-8, as a damaged log can be
        line = draw(st.binary(max_size=200).filter(lambda b: b"\n" not in b and b"\r" not in b))
    if kind == "empty":
        line = b""
    return line


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=st.lists(dac_line(), min_size=5, max_size=60), block=st.sampled_from([0, 1 << 27]))
def test_arrow_path_equals_the_python_parser_line_by_line(lines, block):
    values = pa.array(lines, pa.binary()).view(pa.string())     # Spark's strings are bytes, not checked
    batch = pa.RecordBatch.from_arrays([values, pa.array([PATH] * len(lines)), pa.array([block] * len(lines),
                                                                                         pa.int64())],
                                       names=["value", "_path", "_block"])
    out = [row for b in arrow.parse_batches(PLAN, iter([batch])) for row in
           zip(*[c.to_pylist() for c in b.columns])]
    assert sorted(r[0] for r in out) == list(range(1, len(lines) + 1))       # one row per line, none made up
    width = len(PLAN.columns) - len(QUARANTINE_COLUMNS) - 1
    got = {r[0]: r for r in out}
    for n, raw in enumerate(lines, start=1):
        want = parse_record(PLAN.parsers[0], 0, NAME, n, raw.decode("utf-8", "replace"), width)
        row = got[n]
        assert row[0] & ((1 << LINE_BITS) - 1) == n
        assert all(_same(a, b) for a, b in zip(row, want)), (raw[:200], row[-4:], want[-4:])
        bad = want[-3] is not None
        assert (row[-3] is not None) == bad                      # quarantined exactly when the reference refuses
        if bad:
            assert row[-4] == NAME and row[-3] and row[-2]       # file, field, reason


@pytest.mark.parametrize("raw, field, reason", [
    (b"yes" + b"\t" * 39, "label", "label"),
    (b"1\t\xff\xfe" + b"\t" * 38, "I1", ""),
    ("\ufeff1".encode() + b"\t" * 39, "label", ""),
    (b"1\t2", "record", "expected 40 fields, found 2"),
])
def test_known_bad_lines_are_quarantined_with_field_and_reason(raw, field, reason):
    values = pa.array([raw], pa.binary()).view(pa.string())
    batch = pa.RecordBatch.from_arrays([values, pa.array([PATH]), pa.array([0], pa.int64())],
                                       names=["value", "_path", "_block"])
    [row] = [r for b in arrow.parse_batches(PLAN, iter([batch])) for r in zip(*[c.to_pylist() for c in b.columns])]
    assert row[-4] == NAME and row[-3] == field and reason in row[-2]
