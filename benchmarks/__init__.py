"""Benchmarks: `make bench` runs them all; each prints a table of ratios measured in one run and writes JSON."""
