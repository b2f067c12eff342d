"""Benchmarks: rerunnable scripts that print numbers (``python -m benchmarks --help``)."""
