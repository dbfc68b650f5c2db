"""Benchmarks: each figure is a ratio against a reference timed in the same run."""
