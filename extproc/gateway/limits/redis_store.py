"""The ``redis://`` store: budgets in a Redis shared by every replica. Each
reservation and each settlement is one Lua script, so Redis runs it atomically; times
come from the Redis server's clock, so replicas with skewed clocks still agree.

Per bucket, a sorted set holds the entries by time and a hash their amounts, with the
running total in its ``total`` field; both expire a window after their last use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio
import redis.exceptions

from aigateway.extproc.gateway.config import RedisCredentials
from aigateway.extproc.gateway.limits.store import Charge, Decision, Quota, StoreUnavailable

#: Every key the store writes starts with this (one hash slot: the scripts work on Redis
#: Cluster too).
KEY_PREFIX = "aigateway:{limits}:"

_NOW = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS: seq, then (log, amounts) per charge; ARGV: now or "", then (limit, window, amount)
# per charge. Returns {refused index or 0, entry, then (used, reset, retry) per charge}
# with the numbers as strings (Redis would truncate Lua floats to integers).
_RESERVE = (
    _NOW
    + """
local n = (#KEYS - 1) / 2
local used, refused = {}, 0
for i = 1, n do
  local log, amounts = KEYS[2 * i], KEYS[2 * i + 1]
  local limit, window = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  local cut = now - window
  while true do
    local old = redis.call('ZRANGEBYSCORE', log, '-inf', cut, 'LIMIT', 0, 500)
    if #old == 0 then break end
    local freed = 0
    for _, v in ipairs(redis.call('HMGET', amounts, unpack(old))) do
      freed = freed + (tonumber(v) or 0)
    end
    redis.call('ZREM', log, unpack(old))
    redis.call('HDEL', amounts, unpack(old))
    redis.call('HINCRBY', amounts, 'total', -freed)
  end
  used[i] = tonumber(redis.call('HGET', amounts, 'total') or '0')
  if refused == 0 and used[i] + amount > limit then refused = i end
end
local entry = 0
if refused == 0 then
  entry = redis.call('INCR', KEYS[1])
  for i = 1, n do
    local log, amounts = KEYS[2 * i], KEYS[2 * i + 1]
    local window, amount = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
    redis.call('ZADD', log, now, entry)
    redis.call('HSET', amounts, entry, amount)
    redis.call('HINCRBY', amounts, 'total', amount)
    used[i] = used[i] + amount
    local ttl = math.ceil(window * 1000) + 1000
    redis.call('PEXPIRE', log, ttl)
    redis.call('PEXPIRE', amounts, ttl)
  end
end
local out = {tostring(refused), tostring(entry)}
for i = 1, n do
  local log, amounts = KEYS[2 * i], KEYS[2 * i + 1]
  local limit, window = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  local reset = 0
  local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
  if #oldest > 0 then reset = math.max(tonumber(oldest[2]) + window - now, 0) end
  local retry = 0
  if i == refused then
    retry = window
    if amount <= limit then
      local need, freed, start = used[i] + amount - limit, 0, 0
      while retry == window do
        local page = redis.call('ZRANGE', log, start, start + 499, 'WITHSCORES')
        if #page == 0 then break end
        for j = 1, #page, 2 do
          freed = freed + (tonumber(redis.call('HGET', amounts, page[j])) or 0)
          if freed >= need then
            retry = math.max(tonumber(page[j + 1]) + window - now, 0)
            break
          end
        end
        start = start + 500
      end
    end
  end
  table.insert(out, tostring(used[i]))
  table.insert(out, string.format('%.6f', reset))
  table.insert(out, string.format('%.6f', retry))
end
return out
"""
)

# KEYS: (log, amounts) per charge; ARGV: entry, then the new amount per charge.
_SETTLE = """
local entry = ARGV[1]
for i = 1, #KEYS / 2 do
  local amounts = KEYS[2 * i]
  local old = redis.call('HGET', amounts, entry)
  if old then
    local new = tonumber(ARGV[i + 1])
    redis.call('HSET', amounts, entry, new)
    redis.call('HINCRBY', amounts, 'total', new - tonumber(old))
  end
end
return 0
"""

#: How long one store call may take before the store counts as unreachable.
TIMEOUT_SECONDS = 1.0


def _keys(charge: Charge) -> tuple[str, str]:
    return f"{KEY_PREFIX}{charge.bucket}:log", f"{KEY_PREFIX}{charge.bucket}:amounts"


def connection_options(url: str, credentials: RedisCredentials) -> dict[str, Any]:
    """The redis client's keyword arguments for the store at ``url`` (the password
    revealed only here, into the client, which never prints it)."""
    options: dict[str, Any] = {
        "socket_timeout": TIMEOUT_SECONDS,
        "socket_connect_timeout": TIMEOUT_SECONDS,
        "retry_on_timeout": False,
    }
    if url.startswith("rediss://"):
        # The certificate must name the URL's host (redis-py 5 checks only the chain).
        options["ssl_check_hostname"] = True
    if credentials.username is not None:
        options["username"] = credentials.username
    if credentials.password is not None:
        options["password"] = credentials.password.reveal()
    if credentials.ca_pem is not None:
        options["ssl_ca_data"] = credentials.ca_pem
    return options


class RedisStore:
    """A :class:`~aigateway.extproc.gateway.limits.store.LimitStore` in the Redis at
    ``url`` (``redis://HOST:PORT/DB``, or ``rediss://`` for TLS, which verifies the
    server's certificate and name), logged in with ``credentials``. ``clock``: for tests
    only; by default the Redis server's own clock."""

    def __init__(
        self,
        url: str,
        *,
        credentials: RedisCredentials | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = url
        self.clock = clock
        self.credentials = credentials or RedisCredentials()
        parts = urlsplit(url)
        self.where = f"{parts.hostname}:{parts.port or 6379}"
        self._client: Any = None
        self._reserve: Any = None
        self._settle: Any = None

    def _scripts(self) -> tuple[Any, Any]:
        if self._client is None:
            # Created on first use, inside the event loop that will use it.
            self._client = redis.asyncio.Redis.from_url(
                self.url, **connection_options(self.url, self.credentials)
            )
            self._reserve = self._client.register_script(_RESERVE)
            self._settle = self._client.register_script(_SETTLE)
        return self._reserve, self._settle

    async def reserve(self, charges: Sequence[Charge]) -> Decision:
        script, _ = self._scripts()
        keys = [f"{KEY_PREFIX}seq"]
        args: list[str | int] = ["" if self.clock is None else repr(self.clock())]
        for charge in charges:
            keys.extend(_keys(charge))
            args.extend((charge.limit, repr(charge.window), charge.amount))
        try:
            out = await script(keys=keys, args=args)
        except redis.exceptions.RedisError as exc:
            raise self._unavailable(exc) from None
        refused = int(out[0])
        quotas = tuple(
            Quota(int(float(out[i])), float(out[i + 1]), float(out[i + 2]))
            for i in range(2, len(out), 3)
        )
        return Decision(None if refused == 0 else refused - 1, quotas, int(out[1]))

    async def settle(self, entry: int, charges: Sequence[Charge], amounts: Sequence[int]) -> None:
        _, script = self._scripts()
        keys: list[str] = []
        for charge in charges:
            keys.extend(_keys(charge))
        try:
            await script(keys=keys, args=[entry, *amounts])
        except redis.exceptions.RedisError as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: redis.exceptions.RedisError) -> StoreUnavailable:
        """One line naming the server and Redis's reason (which never holds the password)."""
        missing = self.credentials.password is None
        if missing and isinstance(exc, redis.exceptions.AuthenticationError):
            return StoreUnavailable(
                f"Redis store {self.where} asks for a login: give limits.redis.password"
            )
        if isinstance(
            exc, redis.exceptions.AuthenticationError | redis.exceptions.NoPermissionError
        ):
            return StoreUnavailable(
                f"Redis store {self.where} refused the gateway ({exc}): check limits.redis"
                " and the user's ACL"
            )
        return StoreUnavailable(f"Redis store {self.where}: {exc}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
