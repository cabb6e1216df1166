"""Benchmarks: ratios measured in one run (see README, Performance)."""
