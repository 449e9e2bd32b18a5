"""Latency and cost models (pure functions; no I/O)."""
