"""A per-tenant cap on how many completion tokens one chat request may ask for.

Shared by two examples that put the same policy into the gateway in two ways:
``subclass_processor.py`` (a subclass of ``ChatCompletionProcessor``) and
``compose_wrappers.py`` (a ``ProcessorWrapper`` around it). This module is only the
policy: which tenant may ask for what, and the OpenAI-style error when a request asks
for more. It knows nothing of Envoy or gRPC.

A request asks for ``max_completion_tokens`` (or the older ``max_tokens``; when both are
given the larger counts) times ``n`` (choices generated). A request with neither field
is unbounded: the model may write until its context ends, so only a tenant whose budget
is ``unlimited`` may send one.

The tenant comes from the ``x-tenant`` request header. That is fine for a demo; in
production, derive it from an authenticated identity (a header Envoy's JWT or ext_authz
filter sets after verifying the caller), never from a header any client can write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aigateway.extproc import ImmediateResponse

#: The request header naming the tenant.
TENANT_HEADER = "x-tenant"
#: Written in a budgets file for a tenant that may send requests without a cap.
UNLIMITED = "unlimited"

_MAX_SHOWN = 64  # tenant names in error messages come from clients: keep them short


class BudgetFileError(Exception):
    """A budgets file that cannot be used; the message says where and why."""


@dataclass(slots=True, frozen=True)
class TenantLimit:
    """One tenant's cap; ``max_tokens`` None means requests need no cap."""

    tenant: str
    max_tokens: int | None


@dataclass(slots=True, frozen=True)
class Budgets:
    """Completion-token caps by tenant, and an optional one for everybody else.

    ``default`` applies to tenants not listed and to requests without the header;
    when it is ``None`` those requests are refused with 403.
    """

    tenants: Mapping[str, int | None]
    default: int | None = None
    allow_unlisted: bool = False

    @classmethod
    def from_mapping(cls, doc: Any, source: str = "<budgets>") -> Budgets:
        """From the shape of ``budgets.yaml``: ``tenants`` maps each name to a cap or
        ``unlimited``; the optional ``default`` caps tenants not listed (without it,
        they are refused)."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("tenants"), Mapping):
            raise BudgetFileError(f"{source}: expected a mapping with a 'tenants' mapping")
        unknown = set(doc) - {"tenants", "default"}
        if unknown:
            raise BudgetFileError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
        tenants = {
            str(name): _cap(value, f"{source}: tenants.{name}")
            for name, value in doc["tenants"].items()
        }
        if "default" in doc:
            return cls(tenants, _cap(doc["default"], f"{source}: default"), allow_unlisted=True)
        return cls(tenants)

    @classmethod
    def load(cls, path: str | Path) -> Budgets:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise BudgetFileError(f"{path}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise BudgetFileError(f"{path}: invalid YAML: {exc}") from None
        return cls.from_mapping(doc, str(path))

    def limit_for(self, tenant: str | None) -> TenantLimit:
        """The caller's cap, or a 403 for a tenant we do not know."""
        if tenant and tenant in self.tenants:
            return TenantLimit(tenant, self.tenants[tenant])
        if self.allow_unlisted:
            return TenantLimit(tenant or "-", self.default)
        if not tenant:
            raise ImmediateResponse.error(
                403,
                f"Requests must name their tenant in the {TENANT_HEADER} header.",
                code="missing_tenant",
            )
        raise ImmediateResponse.error(
            403, f"Unknown tenant {tenant[:_MAX_SHOWN]!r}.", code="unknown_tenant"
        )

    @staticmethod
    def check(limit: TenantLimit, payload: Mapping[str, Any]) -> None:
        """Raise a 400 when the request asks for more than ``limit`` allows."""
        asked, param = requested_tokens(payload)
        cap = limit.max_tokens
        if cap is None:
            return
        tenant = limit.tenant[:_MAX_SHOWN]
        if asked is None:
            raise ImmediateResponse.error(
                400,
                f"Tenant {tenant!r} must set max_completion_tokens (or max_tokens) to at"
                f" most {cap}; requests without it are unbounded.",
                param="max_completion_tokens",
                code="tenant_budget_exceeded",
            )
        if asked > cap:
            raise ImmediateResponse.error(
                400,
                f"This request may generate up to {asked} completion tokens; tenant"
                f" {tenant!r} may ask for at most {cap} per request.",
                param=param,
                code="tenant_budget_exceeded",
            )


def requested_tokens(payload: Mapping[str, Any]) -> tuple[int | None, str]:
    """How many completion tokens the request may generate (None: unbounded), and the
    parameter that set it (for the error's ``param``)."""
    asked: int | None = None
    param = "max_completion_tokens"
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if value is None:
            continue
        if not _is_count(value) or value < 1:
            raise ImmediateResponse.error(
                400, f"{name} must be a positive integer.", param=name, code="invalid_value"
            )
        if asked is None or value > asked:
            asked, param = value, name
    n = payload.get("n", 1)
    if n is None:
        n = 1
    if not _is_count(n) or n < 1:
        raise ImmediateResponse.error(400, "n must be a positive integer.", param="n")
    return (None if asked is None else asked * n), param


def _is_count(value: Any) -> bool:
    # JSON true/false parse as bool, which is an int in Python: not a count.
    return isinstance(value, int) and not isinstance(value, bool)


def _cap(value: Any, where: str) -> int | None:
    if value == UNLIMITED:
        return None
    if not _is_count(value) or value < 1:
        raise BudgetFileError(f"{where}: expected a positive integer or {UNLIMITED!r}")
    return int(value)
