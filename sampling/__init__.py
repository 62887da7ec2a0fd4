"""Sampling stage: disjoint train / validation / test sets drawn from the raw logs."""
