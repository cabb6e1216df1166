"""The gate: every client-facing use case, each one decide → record → release.

Each use case owns its unit of work: the decision and its audit entry are
committed together, and only then is anything decrypted and returned.
"""
