"""Scaling mechanisms shared by every controller (batch workers, stage threads, serving)."""
