"""Benchmarks: `make bench` writes JSON results to bench/results/ (not timed tests)."""
