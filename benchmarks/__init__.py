"""Benchmarks: the platform's code paths against physical-limit references, as ratios."""
