"""Topic definitions and event schemas (pydantic v2), one place per event type."""
