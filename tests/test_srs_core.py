"""ScalableSRS core: exact sizes, disjoint sets, determinism, uniformity, retries."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from sampling import srs


@given(st.integers(0, 2**40), st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=50))
def test_vectorised_keys_equal_scalar_keys(seed, ids):
    assert srs.keys(seed, np.array(ids, dtype=np.int64)).tolist() == [srs.key(seed, i) for i in ids]


def test_thresholds_bracket_p():
    lo, hi = srs.thresholds(1000, 100_000, 1e-4)
    assert lo < 0.01 < hi and hi - lo < 0.003
    assert srs.thresholds(0, 10, 1e-4) == (0.0, 0.0) and srs.thresholds(10, 10, 1e-4) == (1.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), shares=st.lists(st.integers(0, 100), min_size=1, max_size=3),
       seed=st.integers(0, 2**31), delta=st.sampled_from([1e-2, 1e-4, 1e-6]))
def test_exact_sizes_and_disjoint_sets(n, shares, seed, delta):
    total = sum(shares) or 1
    wanted = [n * s // max(total, 100) for s in shares]                # sum <= n
    targets = {f"s{i}": k for i, k in enumerate(wanted)}
    ids = list(range(7, 7 + 3 * n, 3))
    out, _, attempts = srs.draw_in_memory({None: ids}, {None: targets}, seed, delta, max_attempts=50)
    for name, k in targets.items():
        assert len(out.get(name, [])) == k
    chosen = [r for rows in out.values() for r in rows]
    assert len(chosen) == len(set(chosen)) and set(chosen) <= set(ids)
    plan = srs.plan_stratum(None, n, targets, delta)            # what the Spark candidate pass keeps
    used = srs.derived_seed(seed, attempts - 1) if attempts > 1 else seed
    assert all(srs.key(used, r) < plan.reach for r in chosen)
    assert attempts >= 1


def test_same_seed_same_sample_in_any_order():
    ids = list(range(5000))
    a, *_ = srs.draw_in_memory({None: ids}, {None: {"train": 700, "test": 300}}, 3, 1e-4)
    b, *_ = srs.draw_in_memory({None: ids[::-1]}, {None: {"train": 700, "test": 300}}, 3, 1e-4)
    c, *_ = srs.draw_in_memory({None: ids}, {None: {"train": 700, "test": 300}}, 4, 1e-4)
    assert srs.digest(a["train"]) == srs.digest(b["train"]) != srs.digest(c["train"])


def test_sets_are_consecutive_key_intervals():
    ids = list(range(2000))
    out, seed, _ = srs.draw_in_memory({None: ids}, {None: {"a": 100, "b": 50}}, 9, 1e-4)
    ranked = sorted(ids, key=lambda r: (srs.key(seed, r), r))
    assert sorted(out["a"]) == sorted(ranked[:100]) and sorted(out["b"]) == sorted(ranked[100:150])


def test_inclusion_is_uniform():
    """Each of 40 rows must be picked about equally often over 2,000 seeded draws of 10 (chi-square, 1%)."""
    ids = list(range(40))
    hits = np.zeros(40)
    for seed in range(2000):
        out, *_ = srs.draw_in_memory({None: ids}, {None: {"s": 10}}, seed, 1e-3, max_attempts=50)
        hits[out["s"]] += 1
    assert hits.sum() == 20_000
    assert chisquare(hits).pvalue > 0.01


def test_short_waitlist_retries_with_derived_seed(monkeypatch):
    calls = []
    real = srs.resolve

    def flaky(plan, counts, waitlist):
        calls.append(1)
        if len(calls) == 1:
            raise srs.ShortWaitlist("forced")
        return real(plan, counts, waitlist)

    monkeypatch.setattr(srs, "resolve", flaky)
    out, used, attempts = srs.draw_in_memory({None: list(range(100))}, {None: {"s": 10}}, 5, 1e-4)
    assert attempts == 2 and used == srs.derived_seed(5, 1) and len(out["s"]) == 10


def test_never_a_wrong_size_when_retries_run_out():
    """With a huge delta the thresholds collapse; it fails loudly instead of returning a wrong size."""
    with pytest.raises(srs.ShortWaitlist, match="no exact sample after 1 attempts"):
        for seed in range(200):
            srs.draw_in_memory({None: list(range(1000))}, {None: {"s": 500}}, seed, 0.999, max_attempts=1)


def test_allocate_and_sizes():
    assert srs.allocate(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert sum(srs.allocate(1000, {"x": 17, "y": 983}).values()) == 1000
    assert srs.resolve_size(1.0, 37) == 37 and srs.resolve_size(1, 37) == 1 and srs.resolve_size(0.5, 3) == 2
    with pytest.raises(ValueError):
        srs.plan_stratum(None, 10, {"a": 11}, 1e-4)


def test_digest_is_order_independent_and_combines():
    assert srs.digest([1, 2, 3]) == srs.digest([3, 1, 2]) != srs.digest([1, 2])
    assert srs.combine_digests([srs.digest([1]), srs.digest([2, 3])]) == srs.digest([1, 2, 3])
    assert srs.digest_count(srs.digest(range(300))) == 300 and srs.digest_count(srs.digest([])) == 0


