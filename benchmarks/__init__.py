"""Benchmarks for ConsentBridge: measure and print, never assert timings (run with `make bench`)."""
