"""Policies as code: fields, purposes, legal bases, views and notices.

Pure: the only I/O is ``loader.load_policy`` reading TOML files. Decisions are
made by the functions of ``policies.decide`` from a loaded ``Policy`` and the
facts handed in.
"""

from policies.decide import Decision
from policies.loader import PolicyError, load_policy
from policies.model import FieldSpec, Policy, PurposeSpec

__all__ = [
    "Decision",
    "FieldSpec",
    "Policy",
    "PolicyError",
    "PurposeSpec",
    "load_policy",
]
