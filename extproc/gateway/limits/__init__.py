"""Limits and budgets: per-tenant tokens, dollars and requests over sliding windows,
reserved before any upstream call and settled to the exact usage (docs/limits.md).

``limiter.py`` decides, ``store.py`` says what a store does, ``sqlite_store.py`` (the
``memory`` store: one machine) and ``redis_store.py`` (every replica) keep the budgets,
``configured.py`` builds it all from the config's ``limits:``.
"""

from aigateway.extproc.gateway.limits.limiter import (
    Admission,
    Grant,
    Kind,
    Limiter,
    ModelLimits,
    Price,
    Rule,
    Usage,
    Verdict,
)
from aigateway.extproc.gateway.limits.store import (
    Charge,
    Decision,
    LimitStore,
    Quota,
    StoreUnavailable,
)

__all__ = [
    "Admission",
    "Charge",
    "Decision",
    "Grant",
    "Kind",
    "LimitStore",
    "Limiter",
    "ModelLimits",
    "Price",
    "Quota",
    "Rule",
    "StoreUnavailable",
    "Usage",
    "Verdict",
]
