"""Arrival processes: Poisson, per-minute counts, per-second RPS, timestamp replay."""
