"""Per-workspace state and what is derived from it."""
