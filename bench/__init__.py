"""``earlyrisk bench``: side-by-side performance measurements.

Each module measures one thing against its baseline in the same run
(scorer vs the paper's re-transform, pipeline vs an empty stateful DoFn, ...);
:mod:`bench.run` puts them together, prints a table and writes
``bench/results.json``. Figures are recorded in docs/PERFORMANCE.md.
"""
