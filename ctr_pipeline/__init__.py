"""Orchestration for ctr-pipeline: configuration, CLI, Spark sessions, run directories."""

__version__ = "0.1.0"
