"""GPU resourcing on demand (Dilu): profiling by pruning search, complementary placement.

Policies live here (pure, no I/O, no clock); the cluster simulation mechanism lives in
:mod:`batchwise.sim`. See ``../shared/papers/dilu.md`` and issue 9.
"""
