"""Resource enforcement on this machine: fractional vCPU allotments per instance."""
