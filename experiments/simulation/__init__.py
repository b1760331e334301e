"""Simulated strategy comparisons: recorded learning curves replayed through Ray Tune's schedulers.

- ``pool``: reading full-length curves (and measured overheads) from finished experiments, the
  pool file format, the built-in pool;
- ``engine``: the discrete-event loop driving a Ray Tune scheduler on a virtual clock;
- ``strategies``: strategy names, the runner's schedulers and searchers, searchers over a pool;
- ``replay``: strategies x seeds on one pool;
- ``report``: compare.py's table and figure for simulated runs, real vs simulated;
- ``cli``: ``experiments/simulate.py``.
"""
