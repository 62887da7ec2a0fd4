"""Evaluation stage: MXE (log loss) and AUC of the trained model on held-out splits."""
