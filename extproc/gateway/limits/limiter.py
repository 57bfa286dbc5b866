"""Admission and settlement of budgets (docs/limits.md).

Before any upstream call a request reserves, in every rule that matches it, its
estimated input tokens plus its maximum output (or their cost, or one request), all or
nothing; when it ends, the reservation is replaced by what the accounting records. The
rules here are config-free: ``configured.py`` builds them from ``limits:``.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from aigateway.extproc.framework.processor import Headers
from aigateway.extproc.gateway.limits.store import (
    Charge,
    LimitStore,
    Quota,
    StoreUnavailable,
)

log = logging.getLogger("aigateway.limits")

#: Nanodollars per US dollar: dollar budgets are kept in integers.
NANODOLLARS = 1_000_000_000
#: Header values longer than this are hashed into the bucket name.
_MAX_KEY = 64


class Kind(enum.Enum):
    TOKENS = "tokens"
    USD = "usd"
    REQUESTS = "requests"


@dataclass(slots=True, frozen=True)
class Rule:
    """At most ``limit`` (tokens, nanodollars or requests) in any ``window`` seconds,
    per value of request header ``header`` (``None``: one shared budget)."""

    name: str
    kind: Kind
    limit: int
    window: float
    header: str | None = None


@dataclass(slots=True, frozen=True)
class Price:
    """USD per million tokens; cache reads and writes cost ``input`` unless given."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def nanodollars(self, usage: Usage) -> float:
        cached = usage.cached_input_tokens
        written = usage.cache_write_input_tokens
        uncached = max(usage.input_tokens - cached - written, 0)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        write_rate = self.input if self.cache_write is None else self.cache_write
        usd_per_million = (
            uncached * self.input
            + cached * cached_rate
            + written * write_rate
            + usage.output_tokens * self.output
        )
        return usd_per_million * (NANODOLLARS / 1_000_000)


@dataclass(slots=True, frozen=True)
class Usage:
    """Tokens, as the accounting counts them (prompt tokens include cache reads and
    writes)."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0


@dataclass(slots=True, frozen=True)
class ModelLimits:
    """The rules one model's requests must pass, its price (for ``usd`` rules) and its
    output allowance when a request names none."""

    rules: tuple[Rule, ...]
    max_output_tokens: int
    price: Price | None = None


class Verdict(enum.Enum):
    ADMITTED = "admitted"
    #: A rule refused it: answer 429.
    REFUSED = "refused"
    #: The store could not be reached and ``on_store_error`` says allow (or deny).
    STORE_ALLOWED = "allow"
    STORE_DENIED = "deny"


@dataclass(slots=True)
class Grant:
    """A request's reservation, to settle exactly once."""

    limiter: Limiter
    limits: ModelLimits
    charges: tuple[Charge, ...]
    entry: int
    #: What was reserved: the input estimate and the most output.
    input_estimate: int
    max_output: int
    settled: bool = False


@dataclass(slots=True, frozen=True)
class Admission:
    """What :meth:`Limiter.admit` decided. ``headers`` go on every answer to the
    request (the tightest rules' ``x-ratelimit-*``; with ``retry-after`` when refused);
    ``rule``: the rule that refused it; ``grant``: the reservation to settle."""

    verdict: Verdict
    headers: tuple[tuple[str, str], ...] = ()
    grant: Grant | None = None
    rule: str = ""
    retry_after: float = 0.0
    #: The refusing rule could never admit the request, however long it waited.
    too_large: bool = False


class Limiter:
    """The budgets of every model: ``models`` maps a model to its limits (a model with
    no rule is absent: its requests cost nothing here)."""

    def __init__(
        self,
        models: Mapping[str, ModelLimits],
        store: LimitStore,
        *,
        deny_on_store_error: bool = False,
    ) -> None:
        self.models = dict(models)
        self.store = store
        self.deny_on_store_error = deny_on_store_error
        self._store_down = False
        self._settling: set[asyncio.Task[None]] = set()

    def limits_for(self, model: str) -> ModelLimits | None:
        return self.models.get(model)

    async def admit(
        self, limits: ModelLimits, headers: Headers | None, input_tokens: int, max_output: int
    ) -> Admission:
        """Reserve ``input_tokens + max_output`` (and their cost, and one request) in
        every rule of ``limits``, or refuse."""
        most = Usage(input_tokens, max_output)
        cost = math.ceil(limits.price.nanodollars(most)) if limits.price is not None else 0
        charges = tuple(
            Charge(
                _bucket(rule, headers),
                rule.limit,
                rule.window,
                _amount(rule.kind, input_tokens + max_output, cost),
            )
            for rule in limits.rules
        )
        try:
            decision = await self.store.reserve(charges)
        except StoreUnavailable as exc:
            return self._outage(exc)
        self._recovered()
        quota_headers = _quota_headers(limits.rules, decision.quotas)
        if decision.refused is None:
            grant = Grant(self, limits, charges, decision.entry, input_tokens, max_output)
            return Admission(Verdict.ADMITTED, quota_headers, grant)
        refused = decision.refused
        retry = decision.quotas[refused].retry_after
        seconds = max(math.ceil(retry), 1)
        return Admission(
            Verdict.REFUSED,
            (
                *quota_headers,
                ("retry-after", str(seconds)),
                ("retry-after-ms", str(max(math.ceil(retry * 1000), 1))),
            ),
            rule=limits.rules[refused].name,
            retry_after=retry,
            too_large=charges[refused].amount > charges[refused].limit,
        )

    async def settle(self, grant: Grant, usage: Usage) -> None:
        """Replace ``grant``'s reservation by ``usage`` (once; never raises)."""
        if grant.settled:
            return
        grant.settled = True
        limits = grant.limits
        cost = round(limits.price.nanodollars(usage)) if limits.price is not None else 0
        tokens = usage.input_tokens + usage.output_tokens
        amounts = [_amount(rule.kind, tokens, cost) for rule in limits.rules]
        if all(a == c.amount for a, c in zip(amounts, grant.charges, strict=True)):
            return  # used what it reserved (a requests rule always does)
        try:
            await self.store.settle(grant.entry, grant.charges, amounts)
        except StoreUnavailable as exc:
            self._outage(exc)  # the reservation stays: it overcharges, never under
        except Exception:
            log.exception("failed to settle a reservation; it stays charged in full")
        else:
            self._recovered()

    def settle_soon(self, grant: Grant, usage: Usage) -> asyncio.Task[None]:
        """:meth:`settle` in a task of its own, which finishes even when the caller is
        cancelled (Envoy cancels an ext_proc stream once it has its answer)."""
        task = asyncio.ensure_future(self.settle(grant, usage))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return task

    async def close(self) -> None:
        """Finish the settlements under way, then close the store."""
        if self._settling:
            await asyncio.wait(set(self._settling))
        await self.store.close()

    def _outage(self, exc: StoreUnavailable) -> Admission:
        deny = self.deny_on_store_error
        if not self._store_down:
            self._store_down = True
            log.warning(
                "limits: the store cannot be reached (%s); %s requests until it is back",
                exc,
                "refusing" if deny else "admitting",
            )
        return Admission(Verdict.STORE_DENIED if deny else Verdict.STORE_ALLOWED)

    def _recovered(self) -> None:
        if self._store_down:
            self._store_down = False
            log.warning("limits: the store is reachable again")


def _amount(kind: Kind, tokens: int, nanodollars: int) -> int:
    if kind is Kind.TOKENS:
        return tokens
    if kind is Kind.USD:
        return nanodollars
    return 1


def _bucket(rule: Rule, headers: Headers | None) -> str:
    """The budget a request draws from: the rule's, per value of its key header."""
    if rule.header is None:
        return rule.name
    value = (headers.get(rule.header) if headers is not None else None) or ""
    if len(value) > _MAX_KEY or not value.isprintable():
        value = "sha256-" + hashlib.sha256(value.encode(errors="surrogatepass")).hexdigest()
    return f"{rule.name}/{value}"


def _quota_headers(
    rules: tuple[Rule, ...], quotas: tuple[Quota, ...]
) -> tuple[tuple[str, str], ...]:
    """OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` of the rule of
    each kind with the least left."""
    out: list[tuple[str, str]] = []
    for kind in (Kind.REQUESTS, Kind.TOKENS):
        tightest: tuple[int, Rule, Quota] | None = None
        for rule, quota in zip(rules, quotas, strict=True):
            if rule.kind is kind:
                remaining = max(rule.limit - quota.used, 0)
                if tightest is None or remaining < tightest[0]:
                    tightest = (remaining, rule, quota)
        if tightest is not None:
            remaining, rule, quota = tightest
            out.append((f"x-ratelimit-limit-{kind.value}", str(rule.limit)))
            out.append((f"x-ratelimit-remaining-{kind.value}", str(remaining)))
            out.append((f"x-ratelimit-reset-{kind.value}", duration(quota.reset)))
    return tuple(out)


def duration(seconds: float) -> str:
    """A duration as OpenAI writes its reset headers: ``1h2m3s``, ``6m0s``, ``1.5s``, ``20ms``."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    whole = math.ceil(seconds * 10) / 10
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.1f}".removesuffix(".0") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text
