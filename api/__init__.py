"""HTTP API v1: the only package that imports FastAPI."""
