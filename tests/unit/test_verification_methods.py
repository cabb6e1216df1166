"""A relayed request's verification method: a closed list, checked in the rights domain
(whatever the entry point), each documented in the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InvalidInput
from rights.requests import VERIFICATION_METHODS, Verification

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("method", ["zhangsan_13812345678", "id_document", "Sms_Code", "sms code"])
def test_a_method_not_on_the_list_is_refused_without_echoing_it(method: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        Verification(method, "CASE-1")
    assert method not in str(refused.value.detail) + str(refused.value.extra)
    assert [e["field"] for e in refused.value.extra["errors"]] == ["verification.method"]


@pytest.mark.parametrize("method", VERIFICATION_METHODS)
def test_every_listed_method_is_accepted(method: str) -> None:
    assert Verification(method, "CASE-1").method == method


def test_the_readme_says_what_each_method_means() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = readme[readme.index("**Verification methods are a closed list**") :]
    paragraph = paragraph[: paragraph.index("\n- ")]
    for method in VERIFICATION_METHODS:
        assert f"`{method}` (" in paragraph, method
