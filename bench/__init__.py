"""Benchmarks, run by hand with ``make bench``. They print figures; they assert nothing."""
