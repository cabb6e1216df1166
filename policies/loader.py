"""Load a policy from TOML files and validate it.

A policy is a directory of ``*.toml`` files (or one file). Each file may hold
any of the top-level tables ``programme``, ``notices``, ``fields``,
``purposes``, ``rights`` and ``breach``; the files are merged, and a key
defined twice is an error. ``programme``, ``rights`` and ``breach`` are taken
whole from the one file that defines them (so an operator swaps the rights
profile by replacing ``rights.toml``); the others merge entry by entry. Every problem is reported as
``<file>: <dotted key>: <what is wrong>``.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from policies.model import Policy

SECTIONS = ("programme", "notices", "fields", "purposes", "rights", "breach")
# Tables one file defines whole, rather than merged entry by entry.
WHOLE = ("programme", "rights", "breach")


class PolicyError(Exception):
    """A policy that does not load. ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid policy:\n  " + "\n  ".join(problems))
        self.problems = problems


def default_policy_dir() -> Path:
    return Path(str(resources.files("policies") / "defaults"))


def load_policy(path: Path | None = None) -> Policy:
    root = path if path is not None else default_policy_dir()
    if root.is_dir():
        files = sorted(root.glob("*.toml"))
        if not files:
            raise PolicyError([f"{root}: no *.toml files"])
    elif root.is_file():
        files = [root]
    else:
        raise PolicyError([f"{root}: no such file or directory"])

    merged: dict[str, Any] = {}
    origin: dict[tuple[str, ...], Path] = {}
    problems: list[str] = []
    for file in files:
        try:
            document = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.append(f"{file}: not valid TOML: {exc}")
            continue
        for section, body in document.items():
            if section not in SECTIONS:
                problems.append(f"{file}: {section}: unknown table (expected one of {SECTIONS})")
                continue
            if section in WHOLE:
                if section in merged:
                    problems.append(f"{file}: {section}: already defined in {origin[(section,)]}")
                    continue
                merged[section] = body
                origin[(section,)] = file
                if isinstance(body, dict):
                    # Problems found across the policy name a key inside it.
                    origin.update({(section, key): file for key in body})
                continue
            if not isinstance(body, dict):
                problems.append(f"{file}: {section}: must be a table")
                continue
            target = merged.setdefault(section, {})
            for key, value in body.items():
                if key in target:
                    problems.append(
                        f"{file}: {section}.{key}: already defined in {origin[(section, key)]}"
                    )
                    continue
                target[key] = value
                origin[(section, key)] = file
    if problems:
        raise PolicyError(problems)

    try:
        return Policy.model_validate(merged)
    except ValidationError as exc:
        raise PolicyError([_describe(error, origin, files) for error in exc.errors()]) from None


def _describe(error: Any, origin: dict[tuple[str, ...], Path], files: list[Path]) -> str:
    loc = tuple(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        # Cross-reference errors raised by Policy itself name their key first.
        match = re.match(r"(\w+)\.(\w+)", message)
        loc_from_message = match.groups() if match else ()
        file = origin.get(tuple(loc_from_message)) if loc_from_message else None
        return f"{file or files[0]}: {message}"
    file = origin.get(loc[:2]) or origin.get(loc[:1]) or files[0]
    return f"{file}: {'.'.join(loc)}: {message}"
