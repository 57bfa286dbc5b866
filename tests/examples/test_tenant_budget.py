"""The budget policy both tenant examples share (``examples/tenant_budget.py``)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from aigateway.extproc.framework.processor import ImmediateResponse
from tests.examples.conftest import EXAMPLES, example_module

tb = example_module("tenant_budget")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({}, (None, "max_completion_tokens")),
        ({"max_tokens": 10}, (10, "max_tokens")),
        ({"max_completion_tokens": 10}, (10, "max_completion_tokens")),
        ({"max_tokens": 10, "max_completion_tokens": 30}, (30, "max_completion_tokens")),
        ({"max_tokens": 30, "max_completion_tokens": 10}, (30, "max_tokens")),
        ({"max_tokens": 10, "n": 3}, (30, "max_tokens")),
        ({"max_tokens": 10, "n": None}, (10, "max_tokens")),
        ({"max_tokens": None}, (None, "max_completion_tokens")),
    ],
)
def test_requested_tokens(payload: dict[str, Any], expected: tuple[int | None, str]) -> None:
    assert tb.requested_tokens(payload) == expected


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"max_tokens": "100"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": 5, "n": 0}, "n"),
        ({"max_tokens": 5, "n": 1.5}, "n"),
    ],
)
def test_bad_values_are_400_naming_the_parameter(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(ImmediateResponse) as refused:
        tb.requested_tokens(payload)
    assert refused.value.status == 400
    error = refused.value.local_error
    assert error is not None and error.param == param


def test_shipped_budgets_file() -> None:
    budgets = tb.Budgets.load(EXAMPLES / "budgets.yaml")
    assert budgets.tenants == {"free": 256, "team": 4096, "batch": None}
    assert budgets.limit_for("batch") == tb.TenantLimit("batch", None)
    with pytest.raises(ImmediateResponse) as unknown:
        budgets.limit_for("mallory")
    assert unknown.value.status == 403


def test_check_allows_up_to_the_cap_and_refuses_past_it() -> None:
    limit = tb.TenantLimit("free", 256)
    tb.Budgets.check(limit, {"max_tokens": 256})
    tb.Budgets.check(limit, {"max_tokens": 128, "n": 2})
    for payload in ({"max_tokens": 257}, {"max_tokens": 129, "n": 2}, {}):
        with pytest.raises(ImmediateResponse) as refused:
            tb.Budgets.check(limit, payload)
        assert refused.value.status == 400
        assert refused.value.local_error is not None
        assert refused.value.local_error.code == "tenant_budget_exceeded"
    tb.Budgets.check(tb.TenantLimit("batch", None), {})


def test_default_covers_unlisted_and_anonymous_callers() -> None:
    budgets = tb.Budgets.from_mapping({"tenants": {"a": 10}, "default": 5})
    assert budgets.limit_for("zed") == tb.TenantLimit("zed", 5)
    assert budgets.limit_for(None) == tb.TenantLimit("-", 5)
    unlimited = tb.Budgets.from_mapping({"tenants": {}, "default": "unlimited"})
    assert unlimited.limit_for(None).max_tokens is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected a mapping"),
        ({"tenants": {"a": 0}}, "tenants.a: expected a positive integer"),
        ({"tenants": {"a": "lots"}}, "tenants.a: expected a positive integer"),
        ({"tenants": {}, "default": -1}, "default: expected a positive integer"),
        ({"tenants": {}, "colour": "blue"}, "unknown key(s) colour"),
    ],
)
def test_bad_budget_files_say_where(doc: Any, message: str) -> None:
    with pytest.raises(tb.BudgetFileError, match=re.escape(message)):
        tb.Budgets.from_mapping(doc, "b.yaml")
