"""The pure feature core: every transform against a small hand-computed example, no leakage, unseen
values, save/load, the feature map, the summary, config validation."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_pipeline.config import Layer, build_config
from ctr_pipeline.errors import ConfigError, InputDataError
from features.encode import ZERO, _to_csr, encode, signed_log1p
from features.featuremap import check_map, feature_map
from features.fit import build_transform, target_table, vocabulary
from features.hashing import bucket_of, cross_values, fold_of
from features.spec import FeatureSpec, resolve_spec
from features.state import FittedTransform, Totals
from features.summary import column_summary, group_widths, summary_table


def rows(enc):
    """Encoded rows as {index: value} dicts."""
    return [dict(zip(enc.indices[a:b].tolist(), enc.values[a:b].tolist()))
            for a, b in zip(enc.indptr[:-1], enc.indptr[1:])]


def fitted(spec, tallies=None, fold_tallies=None, quantiles=None, totals=Totals(4, 1, (2, 2), (1, 0))):
    return build_transform(spec, totals, quantiles or {}, tallies or {}, fold_tallies or {})


# ---------------------------------------------------------------------------------------------- numeric

def test_raw_numeric_keeps_missing_missing_and_zero_a_value():
    t = fitted(FeatureSpec(numeric=(("I1", "raw"),)))
    enc = encode(t, pd.DataFrame({"I1": [0.0, 2.5, np.nan, -3.0]}))
    assert rows(enc) == [{0: ZERO}, {0: 2.5}, {}, {0: -3.0}]
    assert ZERO > 0 and np.float32(ZERO) != 0 and ZERO < 1e-37
    assert not (enc.values == 0).any()


def test_log1p_is_signed():
    t = fitted(FeatureSpec(numeric=(("I1", "log1p"),)))
    got = rows(encode(t, pd.DataFrame({"I1": [3.0, -3.0, 0.0]})))
    assert got == [{0: math.log(4)}, {0: -math.log(4)}, {0: ZERO}]
    assert signed_log1p(np.array([-1e6]))[0] == pytest.approx(-math.log1p(1e6))


def test_quantile_buckets_from_train_boundaries():
    spec = FeatureSpec(numeric=(("I1", "quantile"),), quantile_buckets=4)
    t = fitted(spec, quantiles={"I1": [1.0, 5.0, 5.0]})  # duplicates collapse: boundaries 1, 5
    assert t.quantiles["I1"] == [1.0, 5.0]
    got = rows(encode(t, pd.DataFrame({"I1": [0.0, 1.0, 4.9, 5.0, 99.0, np.nan]})))
    assert got == [{0: 1.0}, {0: 2.0}, {0: 2.0}, {0: 3.0}, {0: 3.0}, {}]


def test_time_features_hour_and_weekday_utc():
    t = fitted(FeatureSpec(time="ts", time_features=("hour", "weekday")))
    monday_13h = 4 * 86400 + 13 * 3600 + 59  # 1970-01-05 13:00:59 UTC was a Monday
    got = rows(encode(t, pd.DataFrame({"ts": [0, monday_13h, None]})))
    assert got == [{0: ZERO, 1: 3.0}, {0: 13.0, 1: ZERO}, {}]  # 1970-01-01 00:00 was a Thursday (3)
    assert [s.name for s in t.slots] == ["hour(ts)", "weekday(ts)"]


# ---------------------------------------------------------------------------------------------- categorical

def test_vocabulary_min_count_oov_and_unseen():
    tally = pd.DataFrame({"value": ["b", "a", "c", "d"], "n": [3, 5, 1, 3]})
    assert list(vocabulary(tally, 2)) == ["a", "b", "d"]  # by count, ties by value
    t = fitted(FeatureSpec(categorical=(("C1", "vocab"),), min_count=2), tallies={"C1": tally})
    assert t.width == 4 and t.oov_index("C1") == 3
    got = rows(encode(t, pd.DataFrame({"C1": ["a", "d", "c", "never-seen", None]})))
    assert got == [{0: 1.0}, {2: 1.0}, {3: 1.0}, {3: 1.0}, {}]


def test_arrow_vocabulary_lookup_equals_pandas_s():
    """encode_arrow looks vocabulary values up with Arrow and leaves vocabulary-only columns out of pandas;
    the rows are the pure encoder's on the same frame (unseen, missing, an empty vocabulary, a column that
    counts read too)."""
    import pyarrow as pa

    from features.encode import encode_arrow

    tallies = {"C1": pd.DataFrame({"value": ["b", "a", "c", "d"], "n": [3, 5, 1, 3]}),
               "C2": pd.DataFrame({"value": ["x"], "n": [1]}),
               "C3": pd.DataFrame({"value": ["p", "q"], "n": [4, 2]})}
    spec = FeatureSpec(categorical=(("C1", "vocab"), ("C2", "vocab"), ("C3", "vocab")), counts=("C3",), min_count=2)
    t = fitted(spec, tallies=tallies)
    frame = pd.DataFrame({"row_id": np.arange(6, dtype=np.int64), "label": [0, 1, 0, 0, 1, 0],
                          "C1": ["a", "d", "c", "never-seen", None, "b"], "C2": ["x", None, "y", "x", "x", None],
                          "C3": ["p", "q", None, "r", "p", "q"]})
    got = encode_arrow(t, pa.RecordBatch.from_pandas(frame, preserve_index=False))
    want = encode(t, frame)
    assert got.column("indices").to_pylist() == [want.indices[a:b].tolist() for a, b in zip(want.indptr, want.indptr[1:])]
    assert got.column("values").to_pylist() == [want.values[a:b].tolist() for a, b in zip(want.indptr, want.indptr[1:])]
    indices = got.column("indices").to_pylist()
    assert indices[0] == [0, 1, 5, 6] and got.column("values").to_pylist()[0] == [4.0, 1.0, 1.0, 1.0]
    assert indices[2] == [4, 5]     # C1 'c' below min_count: OOV; C2's empty vocabulary: OOV; C3 missing
    for rows in ([3, 4], [4, 1], [0]):   # batches smaller than C1's vocabulary: its values looked up the other way
        part = frame.iloc[rows].reset_index(drop=True)
        small = encode_arrow(t, pa.RecordBatch.from_pandas(part, preserve_index=False))
        want = encode(t, part)
        assert small.column("indices").to_pylist() == \
            [want.indices[a:b].tolist() for a, b in zip(want.indptr, want.indptr[1:])], rows


def test_hash_buckets_are_pinned_and_collisions_add():
    # Known buckets: a library change that moved them would silently break saved transforms.
    got = bucket_of("C1", pd.Series(["68fd1e64", "abc", None]), 1 << 18).tolist()
    assert got == [bucket_of("C1", pd.Series(["68fd1e64"]), 1 << 18)[0], got[1], -1]
    assert got[:2] == [126289, 9399]
    assert bucket_of("C2", pd.Series(["68fd1e64"]), 1 << 18)[0] != got[0]  # the column is part of the key
    enc = _to_csr(np.array([[5, 5, -1], [7, 2, 9]]), np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]), 10)
    assert rows(enc) == [{5: 2.0}, {2: 1.0, 7: 1.0, 9: 1.0}]


def test_hashed_columns_share_one_block():
    spec = FeatureSpec(categorical=(("C1", "hash"), ("C2", "hash")), hash_buckets=16)
    t = fitted(spec)
    assert t.hash_offset == 0 and t.width == 16
    frame = pd.DataFrame({"C1": ["x", None], "C2": ["y", "y"]})
    got = rows(encode(t, frame))
    b1 = bucket_of("C1", pd.Series(["x"]), 16)[0]
    b2 = bucket_of("C2", pd.Series(["y"]), 16)[0]
    expect0 = {int(b1): 1.0}
    expect0[int(b2)] = expect0.get(int(b2), 0.0) + 1.0
    assert got == [expect0, {int(b2): 1.0}]


def test_cross_missing_when_any_part_missing():
    frame = pd.DataFrame({"a": ["x", "x", None], "b": ["y", None, "y"]})
    assert cross_values(frame, ("a", "b")).tolist() == ["x\x01y", None, None]
    t = fitted(FeatureSpec(crosses=(("a", "b"),), cross_buckets=32))
    got = rows(encode(t, frame))
    assert got[1:] == [{}, {}] and len(got[0]) == 1
    assert list(got[0]) == [int(bucket_of("a*b", pd.Series(["x\x01y"]), 32)[0])]


def test_counts_from_train_unseen_is_zero_not_missing():
    tallies = {"C1": pd.DataFrame({"value": ["a", "b"], "n": [7, 2]})}
    t = fitted(FeatureSpec(counts=("C1",)), tallies=tallies)
    got = rows(encode(t, pd.DataFrame({"C1": ["a", "b", "zz", None]})))
    assert got == [{0: 7.0}, {0: 2.0}, {0: ZERO}, {}]
    assert t.slots[0].name == "count(C1)"


# ---------------------------------------------------------------------------------------------- target encoding

def _te_transform(smoothing=2.0):
    # Train: 4 rows; value x: fold 0 has 2 rows / 1 click, fold 1 has 1 row / 0 clicks; y: fold 1, 1 row.
    fold_tallies = {"C1": pd.DataFrame({"value": ["x", "x", "y"], "fold": [0, 1, 1],
                                        "n": [2, 1, 1], "clicks": [1, 0, 0]})}
    spec = FeatureSpec(target_encoding=("C1",), smoothing=smoothing, folds=2, seed=3)
    return fitted(spec, fold_tallies=fold_tallies, totals=Totals(4, 1, (2, 2), (1, 0)))


def test_target_encoding_from_all_of_train_hand_computed():
    t = _te_transform()
    table = t.target["C1"]
    assert table.loc["x", ["n", "clicks", "n0", "c0", "n1", "c1"]].tolist() == [3, 1, 2, 1, 1, 0]
    got = rows(encode(t, pd.DataFrame({"C1": ["x", "y", "new", None]})))
    prior = 1 / 4
    assert got[0][0] == pytest.approx((1 + 2 * prior) / (3 + 2))
    assert got[1][0] == pytest.approx((0 + 2 * prior) / (1 + 2))
    assert got[2][0] == pytest.approx(prior)
    assert got[3] == {}


def test_target_encoding_out_of_fold_hand_computed():
    t = _te_transform()
    ids = np.arange(200, dtype=np.int64)
    folds = fold_of(ids, 2, 3)
    r0 = int(ids[folds == 0][0])   # a row in fold 0: sees fold 1 only
    r1 = int(ids[folds == 1][0])
    got = rows(encode(t, pd.DataFrame({"row_id": [r0, r1, r1], "C1": ["x", "x", "y"]}), out_of_fold=True))
    prior_wo0 = (1 - 1) / (4 - 2)   # fold 1's CTR: 0 clicks in 2 rows
    prior_wo1 = (1 - 0) / (4 - 2)
    assert got[0] == {0: ZERO}  # (0 + 2 * prior_wo0) / (1 + 2) = 0: a value, stored as ZERO
    assert prior_wo0 == 0
    assert got[1][0] == pytest.approx((1 + 2 * prior_wo1) / (2 + 2))
    assert got[2][0] == pytest.approx(prior_wo1)  # y occurs only in fold 1: nothing outside it


def test_target_encoding_does_not_leak_labels_out_of_fold():
    """A column whose every value is unique carries the label itself through in-sample target encoding;
    out of fold it carries nothing."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    n = 4000
    ids = np.arange(n, dtype=np.int64)
    label = (rng.random(n) < 0.3).astype(int)
    values = [f"u{i}" for i in ids]
    folds = fold_of(ids, 5, 17)
    tally = pd.DataFrame({"value": values, "fold": folds, "n": 1, "clicks": label})
    spec = FeatureSpec(target_encoding=("uid",), smoothing=1.0, folds=5, seed=17)
    fold_rows = tuple(int((folds == f).sum()) for f in range(5))
    fold_clicks = tuple(int(label[folds == f].sum()) for f in range(5))
    t = fitted(spec, fold_tallies={"uid": tally}, totals=Totals(n, int(label.sum()), fold_rows, fold_clicks))
    frame = pd.DataFrame({"row_id": ids, "uid": values})
    in_sample = encode(t, frame).to_scipy().toarray()[:, 0]
    oof = encode(t, frame, out_of_fold=True).to_scipy().toarray()[:, 0]
    assert roc_auc_score(label, in_sample) == 1.0          # the leak this guards against
    assert abs(roc_auc_score(label, oof) - 0.5) < 0.1       # no label signal left


# ---------------------------------------------------------------------------------------------- folds, csr

@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=(1 << 62)), min_size=1, max_size=50),
       st.integers(min_value=2, max_value=10), st.integers(min_value=0, max_value=1000))
def test_folds_in_range_and_reproducible(ids, k, seed):
    arr = np.array(ids, dtype=np.int64)
    f = fold_of(arr, k, seed)
    assert ((f >= 0) & (f < k)).all()
    assert (fold_of(arr[::-1], k, seed)[::-1] == f).all()  # per row, not per position


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(min_value=-1, max_value=6), min_size=3, max_size=3), min_size=1, max_size=20))
def test_csr_rows_sorted_merged_and_complete(cells):
    idx = np.array(cells)
    val = np.ones(idx.shape)
    enc = _to_csr(idx, val, 7)
    for i, row in enumerate(rows(enc)):
        present = [c for c in cells[i] if c >= 0]
        assert row == {c: float(present.count(c)) for c in present}
        assert list(row) == sorted(row)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 2), st.integers(-1, 4), st.integers(-1, 0)), min_size=1, max_size=20))
def test_csr_fast_path_equals_sorting_when_columns_ascend(cells):
    # column 0 owns indices 0-2, column 1 owns 3-7, column 2 owns 8: disjoint ascending ranges
    idx = np.array([[a, b + 3 if b >= 0 else -1, c + 8 if c >= 0 else -1] for a, b, c in cells])
    val = np.arange(idx.size, dtype=float).reshape(idx.shape) + 1
    fast, slow = _to_csr(idx, val, 9, ordered=True), _to_csr(idx, val, 9)
    assert rows(fast) == rows(slow)


# ---------------------------------------------------------------------------------------------- map, save, summary

def _full_transform():
    spec = FeatureSpec(numeric=(("I1", "raw"), ("I2", "quantile")), categorical=(("C1", "vocab"), ("C2", "hash")),
                       counts=("C1",), target_encoding=("C1",), crosses=(("C1", "C2"),), time="ts",
                       time_features=("hour",), hash_buckets=16, cross_buckets=8, folds=2, seed=3, min_count=1)
    tallies = {"C1": pd.DataFrame({"value": ["a", "b"], "n": [3, 1]})}
    fold_tallies = {"C1": pd.DataFrame({"value": ["a", "a", "b"], "fold": [0, 1, 1], "n": [2, 1, 1],
                                        "clicks": [1, 0, 0]})}
    return build_transform(spec, Totals(4, 1, (2, 2), (1, 0)), {"I2": [1.0, 2.0]}, tallies, fold_tallies)


def test_feature_map_matches_width_and_names():
    t = _full_transform()
    buckets = pd.DataFrame({"block": ["hash"], "bucket": [3], "column": ["C2"], "value": ["q"], "values": [3]})
    fmap = feature_map(t, buckets)
    check_map(fmap, t.width)
    names = fmap["name"].tolist()
    assert names[:5] == ["I1", "I2:q32", "hour(ts)", "count(C1)", "ctr(C1)"]
    assert names[5:8] == ["C1=a", "C1=b", "OOV(C1)"]
    assert names[8 + 3] == "C2=q (+2 more)" and names[8] == "hash[0]"
    assert names[8 + 16] == "cross[0]" and len(names) == 8 + 16 + 8
    assert fmap.loc[fmap["name"] == "C1=b", "source"].item() == "C1"
    with pytest.raises(RuntimeError):
        check_map(fmap.iloc[:-1], t.width)


def test_save_load_round_trip_transforms_identically(tmp_path):
    t = _full_transform()
    t.save(tmp_path / "tr")
    back = FittedTransform.load(tmp_path / "tr")
    frame = pd.DataFrame({"row_id": [1, 2, 3], "I1": [0.0, np.nan, 4.0], "I2": [1.5, 3.0, np.nan],
                          "C1": ["a", "zz", None], "C2": ["q", None, "r"], "ts": [3600, 7200, None]})
    for oof in (False, True):
        a, b = encode(t, frame, oof), encode(back, frame, oof)
        assert (a.indptr == b.indptr).all() and (a.indices == b.indices).all() and (a.values == b.values).all()
    assert back.width == t.width and back.spec == t.spec


def test_load_refuses_tampered_or_missing(tmp_path):
    with pytest.raises(InputDataError, match="transform.json is missing"):
        FittedTransform.load(tmp_path)
    t = _full_transform()
    t.save(tmp_path / "tr")
    doc = (tmp_path / "tr" / "transform.json").read_text().replace('"min_count": 1', '"min_count": 9')
    (tmp_path / "tr" / "transform.json").write_text(doc)
    with pytest.raises(InputDataError, match="spec_hash does not match"):
        FittedTransform.load(tmp_path / "tr")


def test_target_table_and_summary_by_hand():
    table = target_table(pd.DataFrame({"value": ["a", "a", "b"], "fold": [0, 2, 2], "n": [2, 1, 4],
                                       "clicks": [1, 1, 0]}), 3)
    assert table.loc["a"].tolist() == [3, 2, 2, 1, 0, 0, 1, 1]
    c = column_summary("C1", "categorical", 10, 8, 2, [("a", 6, 3), ("b", 2, 0)])
    assert c["coverage"] == 0.8 and c["top"][0] == {"value": "a", "count": 6, "ctr": 0.5}
    t = _full_transform()
    assert group_widths(t) == [{"group": "numeric", "width": 2}, {"group": "time", "width": 1},
                               {"group": "count", "width": 1}, {"group": "ctr", "width": 1},
                               {"group": "vocab:C1", "width": 3}, {"group": "hash", "width": 16},
                               {"group": "cross", "width": 8}]
    text = summary_table({"columns": [c], "groups": group_widths(t), "width": t.width})
    assert "C1" in text and "80.0%" in text and "a (6, ctr 0.500)" in text and "vector width 32" in text


# ---------------------------------------------------------------------------------------------- config

def cfg_with(**features):
    return build_config([Layer("f.yaml", {"features": features})])


def test_spec_defaults_for_criteo_dac():
    spec = resolve_spec(build_config([]))
    assert [c for c, _ in spec.numeric] == [f"I{i}" for i in range(1, 14)]
    assert {e for _, e in spec.categorical} == {"vocab"} and len(spec.categorical) == 26
    spec = resolve_spec(cfg_with(columns={"I5": "log1p", "C3": "hash", "C4": "none"}, crosses=["C1*C2"]))
    assert ("I5", "log1p") in spec.numeric and ("C3", "hash") in spec.categorical
    assert "C4" not in dict(spec.categorical) and "C4" in spec.raw_categorical
    assert spec.crosses == (("C1", "C2"),) and spec.digest() != resolve_spec(build_config([])).digest()


@pytest.mark.parametrize("features, message", [
    ({"counts": ["I3"]}, r"features.counts: 'I3' is a numeric column"),
    ({"target_encoding": ["nope"]}, r"'nope' is not a declared input column"),
    ({"columns": {"I1": "hash"}}, r"features.columns\['I1'\]: 'hash' is not one of raw, log1p"),
    ({"crosses": ["C1"]}, r"'C1' must name two or more different categorical columns"),
    ({"crosses": ["C1*C1"]}, r"two or more different"),
    ({"time_features": ["minute"]}, r"'minute' is not one of hour, weekday"),
    ({"weight": "C1"}, r"features.weight: 'C1' is a categorical column"),
    ({"categorical_encoding": "index"}, r"'index' is not one of vocab, hash, none"),
])
def test_config_errors_name_key_and_file(features, message):
    with pytest.raises(ConfigError, match=message) as err:
        cfg_with(**features)
    assert str(err.value).startswith("f.yaml")
