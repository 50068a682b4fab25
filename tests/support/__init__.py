"""Shared test builders and constants."""
