"""Pure record parsing: every layout, every kind of bad row, row identity."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_pipeline.errors import InputDataError
from ctr_pipeline.readers.core import (QUARANTINE_COLUMNS, CsvParser, DacParser, Layout, LibsvmParser, RecordParser,
                                       RowError, check_header, parse_numeric, parse_partition, parse_record,
                                       parse_time, row_id, split_row_id)

NUM = tuple(f"I{i}" for i in range(1, 14))
CAT = tuple(f"C{i}" for i in range(1, 27))
DAC = Layout("criteo_dac", "label", NUM, CAT)


def dac_line(label="1", nums=None, cats=None):
    nums = nums if nums is not None else [str(i) for i in range(13)]
    cats = cats if cats is not None else [f"v{i}" for i in range(26)]
    return "\t".join([label, *nums, *cats]) + "\n"


def test_dac_good_row_with_missing_values():
    nums = [""] * 13
    nums[4] = "17"
    cats = [""] * 26
    cats[2] = "68fd1e64"
    row = DacParser(DAC).parse(dac_line("0", nums, cats))
    assert row[0] == 0
    assert row[1:14] == tuple([None] * 4 + [17.0] + [None] * 8)
    assert row[14:] == tuple([None, None, "68fd1e64"] + [None] * 23)


def test_unlabeled_dac_and_csv_rows_have_no_label():
    unlabeled = Layout("criteo_dac", "label", NUM, CAT, labeled=False)
    line = dac_line()
    assert DacParser(unlabeled).parse(line.split("\t", 1)[1]) == (None, *DacParser(DAC).parse(line)[1:])
    with pytest.raises(RowError, match="expected 39 fields, found 40"):
        DacParser(unlabeled).parse(line)
    layout = Layout("csv", "click", ("n",), ("c",), delimiter=",", labeled=False)
    check_header(["n", "c"], layout, "f.csv")
    assert CsvParser(layout, ["c", "n"]).parse("x,3\n") == (None, 3.0, "x")
    assert RecordParser(layout).parse({"n": 1, "c": "y"}) == (None, 1.0, "y")


def test_dac_subset_of_columns():
    layout = Layout("criteo_dac", "label", ("I2", "I13"), ("C26",))
    row = DacParser(layout).parse(dac_line())
    assert row == (1, 1.0, 12.0, "v25")


@pytest.mark.parametrize("line, field, reason", [
    (dac_line()[:-1] + "\textra\n", "record", "expected 40 fields, found 41"),
    ("1\t2\t3\n", "record", "expected 40 fields, found 3"),
    (dac_line("2"), "label", "label must be 0 or 1"),
    (dac_line("1", ["x"] + [""] * 12), "I1", "not a number: 'x'"),
    (dac_line("1", ["inf"] + [""] * 12), "I1", "infinite"),
])
def test_dac_bad_rows(line, field, reason):
    with pytest.raises(RowError) as info:
        DacParser(DAC).parse(line)
    assert info.value.field == field and reason in info.value.reason


def test_csv_by_header_with_quotes_and_time():
    layout = Layout("csv", "is_attributed", (), ("ip", "app"), "click_time", drop=("attributed_time",),
                    delimiter=",")
    header = ["ip", "app", "click_time", "attributed_time", "is_attributed"]
    parser = CsvParser(layout, header)
    assert parser.parse('87540,"1,2",2017-11-07 09:30:38,,0\n') == (0, "87540", "1,2", 1510047038)
    with pytest.raises(RowError, match="click_time: time '2017-13-07"):
        parser.parse("1,2,2017-13-07 09:30:38,,0")
    with pytest.raises(RowError, match="expected 5 fields, found 4"):
        parser.parse("1,2,2017-11-07 09:30:38,0")


def test_csv_header_checks_name_file_and_columns():
    layout = Layout("csv", "click", ("x",), ("c",), drop=("id",))
    check_header(["id", "click", "x", "c"], layout, "f.csv")
    with pytest.raises(InputDataError, match=r"f.csv: declared column\(s\) x not in the header"):
        check_header(["id", "click", "c"], layout, "f.csv")
    with pytest.raises(InputDataError, match=r"f.csv: column\(s\) extra are neither used nor dropped"):
        check_header(["id", "click", "x", "c", "extra"], layout, "f.csv")
    with pytest.raises(InputDataError, match="header names c more than once"):
        check_header(["id", "click", "x", "c", "c"], layout, "f.csv")


def test_libsvm_parsing():
    parser = LibsvmParser(Layout("libsvm", "label", (), ()))
    assert parser.parse("1 3:0.5 1:2 qid:4 # comment\n") == (1, [1, 3], [2.0, 0.5])
    assert parser.parse("0\n") == (0, [], [])
    with pytest.raises(RowError, match="expected index:value"):
        parser.parse("1 a:2")
    with pytest.raises(RowError, match="index appears twice"):
        parser.parse("1 2:1 2:3")
    with pytest.raises(RowError, match="label must be 0 or 1"):
        parser.parse("-1 2:1")


def test_record_parser_for_parquet_rows():
    layout = Layout("parquet", "y", ("n",), ("c",))
    assert RecordParser(layout).parse({"y": True, "n": 3, "c": 7}) == (1, 3.0, "7")
    with pytest.raises(RowError, match="n: not a number"):
        RecordParser(layout).parse({"y": 0, "n": "abc", "c": None})


def test_parse_record_marks_bad_rows_with_file_line_field():
    good = parse_record(DacParser(DAC), 2, "f.tsv", 7, dac_line(), width=40)
    assert good[0] == row_id(2, 7) and good[-4:] == (None, None, None, None) and len(good) == 41 + 4
    bad = parse_record(DacParser(DAC), 2, "f.tsv", 8, "0\tx\n", width=40)
    assert bad[0] == row_id(2, 8) and bad[1:41] == (None,) * 40
    assert bad[-4:] == ("f.tsv", "record", "expected 40 fields, found 2", "0\tx")
    assert len(QUARANTINE_COLUMNS) == 4


def test_parse_partition_uses_each_files_parser():
    layout = Layout("csv", "y", ("n",), (), delimiter=",")
    a, b = CsvParser(layout, ["y", "n"]), CsvParser(layout, ["n", "y"])
    out = list(parse_partition([a, b], 2, ["a.csv", "b.csv"], [(0, 2, "1,5"), (1, 2, "5,1")]))
    assert [r[1:3] for r in out] == [(1, 5.0), (1, 5.0)]


def test_numeric_and_time_values():
    assert parse_numeric(" 2.5 ", "x") == 2.5 and parse_numeric("", "x") is None
    assert parse_numeric("nan", "x") is None and parse_numeric(None, "x") is None
    assert parse_time("1510047038", "epoch", "t") == 1510047038
    assert parse_time("14102100", "%y%m%d%H", "hour") == 1413849600  # 2014-10-21 00:00 UTC


@given(st.integers(0, (1 << 23) - 1), st.integers(1, (1 << 40) - 1))
def test_row_id_round_trip(file_index, line):
    assert split_row_id(row_id(file_index, line)) == (file_index, line)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numeric_text_round_trip(value):
    assert parse_numeric(repr(value), "x") == value


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", b"\t", b"\xef\xbb\xbf"]), max_size=30),
       st.integers(1, 7), st.booleans())
def test_the_driver_cuts_lines_as_hadoop_does(parts, chunk, header):
    """At \\n, \\r\\n or a lone \\r, wherever the chunks end; no empty line after a final newline; a byte order
    mark skipped at the start only; numbered from 1 (line 1 dropped as a CSV header)."""
    import io

    from ctr_pipeline.readers.local import BOM, numbered_lines

    data = b"".join(parts)
    lines = data.splitlines()
    if lines and lines[0].startswith(BOM):
        lines[0] = lines[0][len(BOM):]
    expected = list(enumerate(lines, start=1))
    if header:
        expected = expected[1:]
    got = [(first + i, line.encode()) for first, values in numbered_lines(io.BytesIO(data), header, chunk)
           for i, line in enumerate(values.to_pylist())]
    assert got == expected
