"""The limiter a config's ``limits:`` asks for (``None`` when it has no rule)."""

from __future__ import annotations

import os

from aigateway.extproc.gateway.config import ConfigError, GatewayConfig, ResolvedSecrets
from aigateway.extproc.gateway.limits.limiter import (
    NANODOLLARS,
    Kind,
    Limiter,
    ModelLimits,
    Price,
    Rule,
)
from aigateway.extproc.gateway.limits.local_store import LocalStore
from aigateway.extproc.gateway.limits.sqlite_store import STORE_FILE_ENV, SqliteStore
from aigateway.extproc.gateway.limits.store import LimitStore


def rules_from_config(config: GatewayConfig) -> dict[str, ModelLimits]:
    """Each model that some rule covers, with those rules (in config order)."""
    rules = []
    for rule in config.limits.rules:
        kind = Kind(rule.kind)
        limit = rule.tokens or rule.usd or rule.requests
        assert limit is not None
        amount = round(limit.limit * NANODOLLARS) if kind is Kind.USD else int(limit.limit)
        header = rule.key.header if rule.key is not None else None
        models = frozenset(rule.models) if rule.models is not None else None
        rules.append((Rule(rule.name, kind, amount, rule.window_seconds, header), models))
    out = {}
    for model in config.models:
        mine = tuple(r for r, models in rules if models is None or model.name in models)
        if not mine:
            continue
        price = model.price
        # With several backends, the largest default any of them would apply.
        default = max(config.backend(t.backend).default_max_tokens for t in model.targets)
        out[model.name] = ModelLimits(
            mine,
            max_output_tokens=model.max_output_tokens or default,
            price=None
            if price is None
            else Price(price.input, price.output, price.cached_input, price.cache_write),
        )
    return out


def store_from_config(config: GatewayConfig, secrets: ResolvedSecrets) -> LimitStore:
    """``redis(s)://...`` (logged in with ``limits.redis``); for ``memory``, the SQLite
    file a ``serve --workers`` parent made for its workers (named by
    ``AIGATEWAY_LIMITS_FILE``), else this process's memory."""
    store = config.limits.store
    if config.limits.in_redis:
        try:
            from aigateway.extproc.gateway.limits.redis_store import RedisStore
        except ImportError:
            raise ConfigError(
                "limits.store: redis:// needs the redis client: pip install 'aigateway[redis]'"
            ) from None
        return RedisStore(store, credentials=secrets.redis)
    shared = os.environ.get(STORE_FILE_ENV)
    return SqliteStore(shared) if shared else LocalStore()


def limiter_from_config(config: GatewayConfig, secrets: ResolvedSecrets) -> Limiter | None:
    models = rules_from_config(config)
    if not models:
        return None
    return Limiter(
        models,
        store_from_config(config, secrets),
        deny_on_store_error=config.limits.on_store_error == "deny",
    )
