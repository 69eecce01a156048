"""Benchmarks of the UniDiff engine (not tests): `python -m bench --quick` / `python -m bench`.

See bench/run.py for what is measured, docs/performance.md for the results, and
bench/gpu_check.sh for the one-shot GPU check.
"""
