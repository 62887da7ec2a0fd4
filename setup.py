"""Packaging for ctr-pipeline: `pip install .` or `pip install -e .[dev]`."""
from setuptools import find_packages, setup

STAGE_PACKAGES = ["ctr_pipeline", "sampling", "features", "training", "evaluation", "emr_configs", "zeppelin"]

setup(
    name="ctr-pipeline",
    version="0.1.0",
    description="Distributed gradient-boosted trees for click-through-rate prediction on Spark and EMR",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=[p + suffix for p in STAGE_PACKAGES for suffix in ("", ".*")]),
    package_data={"ctr_pipeline": ["py.typed", "log4j2.properties"],
                  "zeppelin": ["notes/*.zpln", "notebooks/*.ipynb"]},
    install_requires=[
        # EMR 7.x runs Spark 3.5: keep local == cluster.
        "pyspark>=3.5,<3.6",
        # xgboost 3.3+ needs Python 3.12 and PySpark 4. xgboost-cpu is the same code without the
        # NCCL wheel; GPU hosts install the full `xgboost==3.2.*` instead (see README).
        "xgboost-cpu>=3.2,<3.3",
        "pandas>=2.0,<3",
        "pyarrow>=12",
        "numpy>=1.24",
        "scipy>=1.10",
        # BLAS on one thread around the driver's logistic regression fits (evaluation/logistic.py)
        "threadpoolctl>=3.1",
        "matplotlib>=3.7",
        "mrjob==0.7.4",
        "boto3>=1.28",
        "PyYAML>=6.0",
        # the analysis notes' Jupyter twins are written with nbformat (zeppelin/render.py)
        "nbformat>=5.9",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "hypothesis>=6.80",
            "moto[server]>=5.0",
            "psutil>=5.9",
            "scikit-learn>=1.3",
            # the Jupyter notebooks are executed by a real kernel in the tests
            "nbclient>=0.10",
            "ipykernel>=6.29",
        ],
    },
    entry_points={"console_scripts": ["ctr-pipeline=ctr_pipeline.cli:main"]},
)
