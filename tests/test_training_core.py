"""Training parameters and the checks made before any Spark work."""
import pytest

from ctr_pipeline.config import build_config, parse_set_option
from ctr_pipeline.errors import ConfigError
from training.core import VALIDATION_FLAG, check_workers, cuda_problem, estimator_params


def params(*sets):
    return estimator_params(build_config([parse_set_option(s) for s in sets]))


def test_sparse_input_settings_and_config_values():
    p = params("training.max_depth=4", "training.params={max_delta_step: 1}")
    assert p["enable_sparse_data_optim"] is True and p["missing"] == 0.0
    assert p["max_depth"] == 4 and p["max_delta_step"] == 1 and p["tree_method"] == "approx"
    assert "validation_indicator_col" not in p


def test_gpu_hist_is_hist_on_cuda():
    p = params("training.tree_method=gpu_hist")
    assert (p["tree_method"], p["device"]) == ("hist", "cuda")


def test_early_stopping_uses_validation_indicator():
    p = params("training.early_stopping_rounds=5")
    assert p["early_stopping_rounds"] == 5 and p["validation_indicator_col"] == VALIDATION_FLAG


def test_workers_checked_against_slots():
    check_workers(2, 2, "x")
    with pytest.raises(ConfigError, match=r"x: training.num_workers is 3 but Spark has only 2 task slot"):
        check_workers(3, 2, "x")


def test_cuda_problems_are_explained():
    assert cuda_problem("cpu", False, 0) is None
    assert "no CUDA support" in cuda_problem("cuda", False, 0)
    assert "no GPU is visible" in cuda_problem("cuda", True, 0)
    assert cuda_problem("cuda", True, 1) is None
