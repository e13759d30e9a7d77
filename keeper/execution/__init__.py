"""Turning a plan into one signed, simulated, sent and confirmed vault transaction."""
