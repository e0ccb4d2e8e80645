"""Spinlock's Dagster code location: thin asset wrappers around :mod:`spinlock_core`."""
