"""Elastic batch inference (AntBatchInfer): shard table, workers, controller.

This first increment holds the durable shard table and the retry policy; the
worker pipeline, the elastic controller and the ``batchwise batch`` command build
on them.
"""
