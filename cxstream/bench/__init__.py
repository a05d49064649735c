"""Benchmarks: each module ``cxstream.bench.<name>`` has ``run(settings, **options) -> dict``.

Figures are printed as a table and written to ``bench-results/<name>.json`` by the ``bench``
command; they are never part of CI's pass/fail.
"""
