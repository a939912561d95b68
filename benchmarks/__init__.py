"""Benchmarks: not part of `make test`; `make bench` runs them and prints measured ratios."""
