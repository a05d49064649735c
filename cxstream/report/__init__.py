"""The quality-assurance report: the CX plan's periodic evaluation as one HTML page.

:mod:`~cxstream.report.data` gathers the figures of a period from ClickHouse by running the
exported boards' own panel SQL; :mod:`~cxstream.report.charts` draws them as inline SVG;
:mod:`~cxstream.report.render` makes the self-contained page; :mod:`~cxstream.report.cli` is
``cxstream report``.
"""
