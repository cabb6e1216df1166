"""Append-only, hash-chained audit log: canonical entries, append, verify."""
