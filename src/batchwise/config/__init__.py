"""Typed configuration: apps, model profiles, price books and plans."""
