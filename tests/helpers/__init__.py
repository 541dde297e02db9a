"""Shared test helpers: tiny configs, evaluation runs and reference implementations."""
