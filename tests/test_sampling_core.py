"""Sampling plans: sizes as counts or fractions, proportional strata, negative downsampling."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_pipeline.errors import InputDataError
from ctr_pipeline.schema import SamplingConfig
from sampling.core import inclusion_rates, plan_targets, requested_sizes


def test_counts_and_fractions():
    cfg = SamplingConfig(train=700, validation=0.1, test=0.2)
    assert requested_sizes(cfg, 1000) == {"train": 700, "validation": 100, "test": 200}
    assert requested_sizes(SamplingConfig(train=0.9, validation=0, test=1), 10) == \
        {"train": 9, "validation": 0, "test": 1}


def test_sizes_larger_than_input_are_named():
    with pytest.raises(InputDataError, match=r"train=900 \(900 rows\).* add up to 1,100 rows but the input has "
                                             r"only 1,000"):
        requested_sizes(SamplingConfig(train=900, validation=0.1, test=0.1), 1000)
    with pytest.raises(InputDataError, match="no usable rows"):
        requested_sizes(SamplingConfig(), 0)
    with pytest.raises(InputDataError, match="sampling.test = 0.1 gives 0 rows out of 3"):
        requested_sizes(SamplingConfig(), 3)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["0", "1", "2", "3"]), st.integers(1, 500), min_size=1),
       st.floats(0.05, 0.6), st.floats(0.0, 0.2), st.floats(0.05, 0.2))
def test_stratified_allocation_is_exact_and_within_strata(counts, tr, va, te):
    cfg = SamplingConfig(train=tr, validation=va, test=te, stratify_by="label")
    n = sum(counts.values())
    try:
        sizes = requested_sizes(cfg, n)
    except InputDataError:
        return
    targets = plan_targets(cfg, counts)
    for name, k in sizes.items():
        assert sum(t[name] for t in targets.values()) == k
    for s, per_set in targets.items():
        assert all(v >= 0 for v in per_set.values()) and sum(per_set.values()) <= counts[s]


def test_negative_downsampling_rates_apply_to_train_and_validation_only():
    cfg = SamplingConfig(train=0.8, validation=0.1, test=0.1, stratify_by="label", strata_rates={"0": 0.01})
    counts = {"0": 100_000, "1": 4_000}
    targets = plan_targets(cfg, counts)
    assert targets["1"]["train"] == 3_200 and targets["0"]["train"] == 800
    assert targets["0"]["test"] == 10_000
    rates = inclusion_rates(targets, counts)
    assert rates["train"]["0"] == pytest.approx(0.008) and rates["train"]["1"] == pytest.approx(0.8)
    with pytest.raises(InputDataError, match="names value\\(s\\) 2 that column 'label' does not have"):
        plan_targets(SamplingConfig(stratify_by="label", strata_rates={"2": 0.5}), counts)


def test_explicit_sizes_per_stratum():
    cfg = SamplingConfig(train=0.5, validation=0.1, test=0.1, stratify_by="label",
                         strata_sizes={"train": {1: 300, "0": 2000}})
    targets = plan_targets(cfg, {"0": 9000, "1": 1000})
    assert targets["1"]["train"] == 300 and targets["0"]["train"] == 2000
    assert targets["1"]["test"] + targets["0"]["test"] == 1000
    with pytest.raises(InputDataError, match="stratum '1' of 'label' has 1,000 rows but the sets ask"):
        plan_targets(SamplingConfig(stratify_by="label", strata_sizes={"train": {"1": 990}}), {"0": 9000, "1": 1000})
    with pytest.raises(InputDataError, match=r"strata_sizes\['train'\] names value\(s\) 7"):
        plan_targets(SamplingConfig(stratify_by="label", strata_sizes={"train": {"7": 1}}), {"0": 9000, "1": 1000})
