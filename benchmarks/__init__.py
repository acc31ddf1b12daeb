"""Benchmarks: overhead.py (Trainer against a hand-written loop, data paths) and gpu_check.py."""
