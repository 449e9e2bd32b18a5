"""Where instances run: one layer for batch workers and (next) serving instances.

An instance is a Python entry (``python -m MODULE ARGS``) with a CPU share. A backend
starts, polls, drains and kills instances and says how many CPUs are free:
:class:`~batchwise.backends.local.LocalProcesses` (the embedded default),
:class:`~batchwise.backends.stub.StubBackend` (in memory, for unit tests).
:mod:`batchwise.backends.ray` connects batch jobs (:mod:`batchwise.batch.ray_backend`)
and serving (:mod:`batchwise.serving.ray_pool`) to a Ray cluster the same way.
"""
