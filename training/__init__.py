"""Training stage: distributed XGBoost on Spark (xgboost.spark.SparkXGBClassifier)."""
