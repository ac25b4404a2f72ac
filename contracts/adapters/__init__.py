"""Thin adapters from other tools to the validator core."""
