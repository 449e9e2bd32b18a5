"""batchwise: serve and batch DNN inference at the lowest cost that meets every SLO."""

__version__ = "0.1.0"
