"""Helpers shared by the tests (and by samples/ and benchmarks/ scripts)."""
