"""Metric reference implementations against scikit-learn and hand computations."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, roc_auc_score

from ctr_pipeline.errors import InputDataError
from evaluation.core import auc, check_two_classes, mxe


def test_mxe_by_hand():
    assert mxe([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2, abs=1e-12)


def test_auc_by_hand_with_ties():
    # positives 0.8, 0.5 ; negatives 0.5, 0.1 -> pairs: (0.8>0.5)1 (0.8>0.1)1 (0.5=0.5)0.5 (0.5>0.1)1
    assert auc([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.1]) == pytest.approx(3.5 / 4, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), min_size=2, max_size=200))
def test_auc_and_mxe_match_sklearn(pairs):
    y = np.array([p[0] for p in pairs], dtype=int)
    if y.min() == y.max():
        return
    scores = np.array([p[1] for p in pairs]) / 20.0          # many ties, values 0 and 1 included
    assert auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-9)
    probs = np.clip(scores, 1e-15, 1 - 1e-15)
    assert mxe(y, scores) == pytest.approx(log_loss(y, probs, labels=[0, 1]), abs=1e-9)


def test_one_class_is_a_clear_error():
    with pytest.raises(InputDataError, match="only one class"):
        auc([1, 1], [0.2, 0.3])
    with pytest.raises(InputDataError, match="split test has only one class"):
        check_two_classes("test", 10, 0)
    with pytest.raises(InputDataError, match="split test is empty"):
        check_two_classes("test", 0, 0)
