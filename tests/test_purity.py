"""Stage cores import no Spark, boto3 or mrjob; importing the CLI does no Spark work."""
import subprocess
import sys

import pytest

CORES = ["sampling.core", "sampling.srs", "sampling.driver", "features.driver", "features.tally", "features.spec",
         "features.hashing", "features.state", "features.fit",
         "features.encode", "features.featuremap", "features.summary", "training.core", "evaluation.core",
         "evaluation.report", "evaluation.compare", "evaluation.plots", "evaluation.local_metrics",
         "evaluation.logistic",
         "ctr_pipeline.readers.core", "ctr_pipeline.rowhash", "ctr_pipeline.narrow", "ctr_pipeline.threads",
         "ctr_pipeline.config", "ctr_pipeline.demo_data", "ctr_pipeline.runs", "ctr_pipeline.cli",
         "ctr_pipeline.pipeline", "ctr_pipeline.storage", "ctr_pipeline.aws", "emr_configs.definition",
         "emr_configs.validate", "emr_configs.iam", "emr_configs.mrjob_conf", "emr_configs.steps", "emr_configs.cli"]


@pytest.mark.parametrize("module", CORES)
def test_core_imports_no_heavy_frameworks(module):
    code = (f"import sys, {module}; bad = [m for m in ('pyspark', 'boto3', 'mrjob', 'xgboost') "
            "if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"
