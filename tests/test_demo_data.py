"""The demo generator: layout, determinism, realistic structure, and a label that is learnable."""
import gzip
import hashlib

import numpy as np
import pytest

from ctr_pipeline.demo_data import CAT_CARDINALITY, generate
from ctr_pipeline.readers.core import DacParser, Layout

NUM = tuple(f"I{i}" for i in range(1, 14))
CAT = tuple(f"C{i}" for i in range(1, 27))


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "d.tsv.gz"
    info = generate(30_000, path, seed=5)
    parser = DacParser(Layout("criteo_dac", "label", NUM, CAT))
    with gzip.open(path, "rt") as fh:
        parsed = [parser.parse(line) for line in fh]
    return info, parsed, path


def test_layout_and_positive_rate(rows):
    info, parsed, _ = rows
    assert len(parsed) == 30_000 and info["rows"] == 30_000
    assert 0.03 <= info["positive_rate"] <= 0.05
    assert sum(r[0] for r in parsed) == info["positives"]


def test_deterministic_per_seed(rows, tmp_path):
    _, _, path = rows
    again = tmp_path / "again.tsv.gz"
    other = tmp_path / "other.tsv.gz"
    generate(30_000, again, seed=5)
    generate(30_000, other, seed=6)
    digest = lambda p: hashlib.sha256(gzip.open(p).read()).hexdigest()  # noqa: E731
    assert digest(again) == digest(path) and digest(other) != digest(path)


def test_realistic_structure(rows):
    _, parsed, _ = rows
    c3 = [r[16] for r in parsed]
    counts = np.array(sorted(np.unique([c for c in c3 if c], return_counts=True)[1], reverse=True))
    assert CAT_CARDINALITY[2] == 100_000 and len(counts) > 5_000       # long tail of a 1e5-value field
    assert counts[0] > 20 * np.median(counts)                           # Zipf head
    assert 0.35 < np.mean([r[1] is None for r in parsed]) < 0.55        # I1 missing ~45%
    i5 = np.array([r[5] for r in parsed if r[5] is not None])
    assert np.percentile(i5, 99) > 10 * np.median(i5)                   # heavy-tailed counts


def test_label_depends_on_features(rows):
    """I1 missingness and the C5 x C7 interaction move the click rate."""
    _, parsed, _ = rows
    y = np.array([r[0] for r in parsed])
    i1_missing = np.array([r[1] is None for r in parsed])
    assert abs(y[i1_missing].mean() - y[~i1_missing].mean()) > 0.005


def test_rejects_non_positive_rows(tmp_path):
    with pytest.raises(ValueError):
        generate(0, tmp_path / "x.tsv")
