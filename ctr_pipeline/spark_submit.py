"""spark-submit entry point for every stage (EMR steps run exactly this):

    spark-submit [spark options] ctr_pipeline/spark_submit.py STAGE --out RUN_DIR [--config FILE] ...

STAGE is sample, features, train, evaluate or run; the master comes from spark-submit.
"""
import sys

from ctr_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
