"""``python -m bench`` runs end to end and writes rows every reader can rely on.

A smoke test, as CI runs it (``--quick --check``), shrunk to 300 members; it
checks that the runner works and what its JSON holds, never the timings.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ("suite", "name", "a", "a_value", "b", "b_value", "unit", "ratio", "target", "met")


@pytest.mark.slow
def test_quick_check_run_writes_rows_with_the_contract_keys_and_numeric_values(
    tmp_path: Path,
) -> None:
    """Once, on the SQLite file the runner makes itself (``--db`` runs are exercised by hand)."""
    out = tmp_path / "latest.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERGUARD_")}
    done = subprocess.run(  # noqa: S603 (our own interpreter and module)
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--check",
            "--members",
            "300",
            "--only",
            "export",
            "append",
            "verify",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())

    assert result["failures"] == {}
    assert {row["suite"] for row in result["rows"]} == {"export", "append", "verify"}
    for row in result["rows"]:
        assert set(CONTRACT) <= row.keys(), row
        for key in ("a_value", "b_value", "ratio"):
            value = row[key]
            assert isinstance(value, int | float) and not isinstance(value, bool), (key, row)
            assert math.isfinite(value) and value > 0, (key, row)
        # A row without a stated target (as http's untargeted rows, or the anonymised
        # export's memory, which grows with the members by design) has no verdict.
        if row["target"] is None:
            assert row["met"] is None, row
        else:
            assert isinstance(row["met"], bool), row
        assert row["notes"]
    machine = result["machine"]
    assert machine["database"] == "sqlite"
    assert machine["cpu_count"] >= 1
    assert machine["members"] == 300
    # The Markdown table is printed with one line per row.
    assert done.stdout.count("\n| ") >= len(result["rows"])
