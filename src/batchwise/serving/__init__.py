"""Serving policies shared by the simulator and the live gateway."""
