"""Ledger replay, read models and reports."""
