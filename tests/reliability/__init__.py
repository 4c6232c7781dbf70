"""Reliability suites (issue 5): hostile input, caps, load, faults, access, model integrity.

Run them all with ``pytest -m reliability`` (slow parts included); the default
``pytest`` run keeps the quick ones. Figures: ``python scripts/reliability_report.py``.
"""
