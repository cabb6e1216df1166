"""Policies as code: fields, purposes, legal bases, views and notices.

Pure: the only I/O is ``loader.load_policy`` reading TOML files. Decisions are
made by ``decide`` from a loaded ``Policy`` and the facts handed in.
"""

from policies.decide import Decision, decide
from policies.loader import PolicyError, load_policy
from policies.model import FieldSpec, Policy, PurposeSpec

__all__ = [
    "Decision",
    "FieldSpec",
    "Policy",
    "PolicyError",
    "PurposeSpec",
    "decide",
    "load_policy",
]
