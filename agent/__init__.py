"""Policies, the one prompt format, the episode loop and trajectory collection."""
