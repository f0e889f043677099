"""Decisioning: which content each visitor gets."""
