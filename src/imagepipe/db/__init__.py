"""Persistence: the task row is the record of truth; Redis only delivers."""
