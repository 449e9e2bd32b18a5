"""Profiling models on this machine: latency over batch sizes and kernel-enforced vCPU shares."""
