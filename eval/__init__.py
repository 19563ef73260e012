"""Measure and compare policies on the same held-out seeds."""
