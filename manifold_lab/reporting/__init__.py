"""Reporting: any study's results folder aggregated into tables, statistics and figures.

- ``aggregate``  the records of a results folder grouped by grid point (``Aggregate``)
- ``report``     ``summary.csv``, ``comparisons.csv`` and ``report.md`` (``write_report``); a suite's report
- ``tables``     ``curves.csv`` and ``finals.csv``, tidy tables for pandas or R
- ``cells``      CSV and markdown cells, the one formatting of numbers in both

The statistics over seeds are ``manifold_lab.stats``. Generic: nothing here knows
a claim of the paper (``manifold_lab.reproduction`` builds on it, never the reverse).
"""
