"""Operator tools behind ``cloudstack-cpi``: calling the CPI, the lifecycle check, the demo, validation."""
