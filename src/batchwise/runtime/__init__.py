"""Model runtimes shared by batch jobs and serving instances (one runner layer)."""
