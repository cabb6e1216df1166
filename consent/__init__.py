"""Consent registry: current state per member and purpose, append-only history, receipts."""
