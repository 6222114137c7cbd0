"""Benchmarks: every figure a ratio against a limit measured in the same run (issue 6).

``python -m bench --list``; ``python -m bench NAME [--quick]``; ``make bench`` runs them all.
"""
