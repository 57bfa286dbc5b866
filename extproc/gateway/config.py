"""The gateway config file: backends, models and how to reach them.

Validated with pydantic at start. A bad file raises :class:`ConfigError` whose message
names the file, the key path (``backends[0].endpoint``) and the reason; the CLI prints
it as one line and exits non-zero. Secrets are read once, at load, into
:class:`Secret` values that never print their content.
"""

from __future__ import annotations

import math
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aigateway.extproc.gateway.forwarded_headers import GATEWAY_HEADER_PREFIX, NEVER_FORWARDED

Schema = Literal[
    "openai", "azure-openai", "aws-bedrock", "anthropic", "gcp-gemini", "gcp-vertex-ai"
]
SCHEMAS: tuple[str, ...] = (
    "openai",
    "azure-openai",
    "aws-bedrock",
    "anthropic",
    "gcp-gemini",
    "gcp-vertex-ai",
)
#: Each schema's ``gen_ai.provider.name`` (the OpenTelemetry GenAI conventions' values).
GENAI_PROVIDERS = {
    "openai": "openai",
    "azure-openai": "azure.ai.openai",
    "aws-bedrock": "aws.bedrock",
    "anthropic": "anthropic",
    "gcp-gemini": "gcp.gemini",
    "gcp-vertex-ai": "gcp.vertex_ai",
}


class ConfigError(Exception):
    """A config file that cannot be used; the message says where and why."""


class Secret:
    """A secret value. ``str()``/``repr()`` never show it; use :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def config_relative(path: str, base_dir: Path) -> Path:
    """A path the config file names: relative paths start at its folder."""
    out = Path(path).expanduser()
    return out if out.is_absolute() else base_dir / out


class SecretRef(_Strict):
    """Where a secret comes from: exactly one of ``env``, ``file`` or ``value``."""

    env: str | None = None
    file: str | None = None
    value: str | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of env, file or value")
        return self

    def __repr__(self) -> str:
        if self.env is not None:
            return f"SecretRef(env={self.env!r})"
        if self.file is not None:
            return f"SecretRef(file={self.file!r})"
        return "SecretRef(value='***')"

    def resolve(self, base_dir: Path) -> Secret:
        """Read the secret now; raises ``ValueError`` saying what is missing."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ValueError(f"environment variable {self.env} is not set")
        elif self.file is not None:
            path = config_relative(self.file, base_dir)
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
        else:
            value = self.value or ""
        if not value:
            raise ValueError("the secret is empty")
        return Secret(value)


class AwsAuth(_Strict):
    region: str = Field(min_length=1)
    access_key_id: SecretRef | None = None
    secret_access_key: SecretRef | None = None
    session_token: SecretRef | None = None

    @model_validator(mode="after")
    def _pair(self) -> AwsAuth:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError(
                "give both access_key_id and secret_access_key, or neither"
                " (to use botocore's default credential chain)"
            )
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        return self


class GcpAuth(_Strict):
    """Google OAuth2 access tokens minted from a service-account key file (its own
    ``token_uri``); leave ``auth`` out for Application Default Credentials."""

    #: The key file (JSON), relative to the config file's folder.
    service_account_file: str = Field(min_length=1)


class BackendAuth(_Strict):
    api_key: SecretRef | None = None
    aws: AwsAuth | None = None
    gcp: GcpAuth | None = None

    @model_validator(mode="after")
    def _one(self) -> BackendAuth:
        given = [k for k in ("api_key", "aws", "gcp") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of api_key, aws or gcp")
        return self


_NAME = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"


class Outlier(_Strict):
    """Passive health (docs/architecture.md, "Routing over several backends"): a backend
    that failed ``consecutive_failures`` attempts in a row (5xx, connect failures, resets,
    timeouts) is left out for ``ejection_seconds``."""

    consecutive_failures: int = Field(default=5, ge=1, le=1000)
    ejection_seconds: float = Field(default=30.0, gt=0, le=3600)


class Backend(_Strict):
    name: Annotated[str, Field(pattern=_NAME, max_length=60)]
    schema_: Schema = Field(alias="schema")
    endpoint: str
    auth: BackendAuth | None = None
    #: Upstream request timeout: the whole response, streamed or not.
    timeout_seconds: float = Field(default=300.0, gt=0, le=3600)
    #: Azure OpenAI ``api-version`` query parameter.
    api_version: str | None = None
    #: Anthropic ``anthropic-version`` header.
    anthropic_version: str = "2023-06-01"
    #: Anthropic needs max_tokens; used when the client sends none.
    default_max_tokens: int = Field(default=4096, gt=0)
    #: Vertex AI: the Google Cloud project and region (location) of the models.
    project: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.:-]*$", max_length=100)] | None = None
    region: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=60)] | None = None
    #: Client headers this backend receives besides what its API needs: names, or
    #: prefixes ending in ``*`` (docs/architecture.md, "Headers a backend receives").
    forward_headers: tuple[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'+.^_`|~-]+\*?$", max_length=100)], ...
    ] = ()
    #: Passive health for the models that spread over several backends.
    outlier: Outlier | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("forward_headers")
    @classmethod
    def _forward_headers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(name.lower() for name in value)
        for name in names:
            if name in NEVER_FORWARDED or name.startswith(GATEWAY_HEADER_PREFIX):
                raise ValueError(f"{name} is never forwarded to a backend")
            if name.startswith("x-envoy-"):
                raise ValueError(f"{name} is Envoy's own: a processor cannot forward it")
        return names

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http(s)://host[:port][/prefix]")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry a query, fragment or credentials")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("has a bad port") from None
        return value.rstrip("/")

    @model_validator(mode="after")
    def _schema_needs(self) -> Backend:
        if self.schema_ == "azure-openai" and not self.api_version:
            raise ValueError("azure-openai backends need api_version (e.g. 2024-10-21)")
        vertex = self.schema_ == "gcp-vertex-ai"
        if vertex and (self.project is None or self.region is None):
            raise ValueError("gcp-vertex-ai backends need project and region (e.g. us-central1)")
        if not vertex and (self.project is not None or self.region is not None):
            raise ValueError("project and region are only for gcp-vertex-ai backends")
        if self.auth is not None:
            if self.auth.aws is not None and self.schema_ != "aws-bedrock":
                raise ValueError("auth.aws is only for aws-bedrock backends")
            if self.auth.gcp is not None and not vertex:
                raise ValueError("auth.gcp is only for gcp-vertex-ai backends")
            if self.auth.api_key is not None and self.schema_ == "aws-bedrock":
                raise ValueError("aws-bedrock backends sign with auth.aws, not an api_key")
            if self.auth.api_key is not None and vertex:
                raise ValueError(
                    "gcp-vertex-ai backends use OAuth2 tokens: auth.gcp, or no auth for"
                    " Application Default Credentials"
                )
        return self

    # Derived views of the endpoint (used by the processor and the Envoy bootstrap).
    @property
    def tls(self) -> bool:
        return urlsplit(self.endpoint).scheme == "https"

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.endpoint)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def authority(self) -> str:
        """The ``host`` header upstream: the port only when not the scheme's default."""
        parts = urlsplit(self.endpoint)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        default = 443 if parts.scheme == "https" else 80
        return host if parts.port in (None, default) else f"{host}:{parts.port}"

    @property
    def path_prefix(self) -> str:
        return urlsplit(self.endpoint).path.rstrip("/")

    @property
    def genai_provider(self) -> str:
        """The ``gen_ai.provider.name`` of this backend's schema."""
        return GENAI_PROVIDERS[self.schema_]


_Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ModelPrice(_Strict):
    """USD per million tokens (docs/metrics.md, "Costs"). Cached prompt tokens (cache reads)
    cost ``cached_input`` and cache writes ``cache_write``; either left out costs
    ``input``."""

    input: _Rate
    output: _Rate
    cached_input: _Rate | None = None
    cache_write: _Rate | None = None


class ModelBackend(_Strict):
    """One backend of a model that spreads over several (``models[].backends``)."""

    backend: str
    backend_model: str | None = Field(default=None, min_length=1)
    #: 0 is tried first; a higher number only while every lower one fails or is ejected.
    priority: int = Field(default=0, ge=0, le=10)
    #: The share of requests within its priority.
    weight: int = Field(default=1, ge=1, le=1000)


#: The failures ``models[].retry.on`` can retry
#: (docs/architecture.md, "Routing over several backends").
RetryOn = Literal["connect-failure", "reset", "5xx", "429"]
RETRY_ON: tuple[RetryOn, ...] = ("connect-failure", "reset", "5xx", "429")


class Retry(_Strict):
    """How a model with several backends retries a failed attempt on another."""

    #: Attempts in all, the first included.
    attempts: int = Field(default=2, ge=1, le=10)
    #: How long one attempt may wait for the response to start; unset: the backend's
    #: ``timeout_seconds`` bounds the whole request.
    per_try_timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    on: tuple[RetryOn, ...] = Field(default=RETRY_ON, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, value: Any) -> Any:
        # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean true, and 429 as a number.
        if isinstance(value, dict) and True in value:
            value = {("on" if k is True else k): v for k, v in value.items()}
        if isinstance(value, dict) and isinstance(value.get("on"), list):
            value = {**value, "on": [str(v) if isinstance(v, int) else v for v in value["on"]]}
        return value


class Model(_Strict):
    name: str = Field(min_length=1, max_length=256)
    #: The one backend (or ``backends`` for several).
    backend: str | None = None
    backend_model: str | None = Field(default=None, min_length=1)
    backends: tuple[ModelBackend, ...] | None = Field(default=None, min_length=1, max_length=16)
    retry: Retry | None = None
    price: ModelPrice | None = None
    #: The most output tokens one request may produce, for limits (``limits:``) when the
    #: request names none; else the backend's ``default_max_tokens``.
    max_output_tokens: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_form(self) -> Model:
        if (self.backend is None) == (self.backends is None):
            raise ValueError("set either backend (one) or backends (a list), not both")
        if self.backends is not None:
            if self.backend_model is not None:
                raise ValueError(
                    "backend_model goes on each backends[] entry when backends is a list"
                )
            names = [b.backend for b in self.backends]
            for i, name in enumerate(names):
                if name in names[:i]:
                    raise ValueError(f"backends[{i}].backend: {name!r} is listed twice")
        if self.retry is not None and len(self.targets) < 2:
            raise ValueError("retry needs two or more backends (an attempt is retried on another)")
        return self

    @property
    def targets(self) -> tuple[ModelBackend, ...]:
        """The model's backends, the single ``backend:`` form as a list of one."""
        if self.backends is not None:
            return self.backends
        assert self.backend is not None
        return (ModelBackend(backend=self.backend, backend_model=self.backend_model),)

    @property
    def several(self) -> bool:
        """Envoy picks the backend per attempt (docs/architecture.md, "Routing over
        several backends"); a model with one backend keeps the direct path."""
        return len(self.targets) > 1

    @property
    def retry_policy(self) -> Retry:
        """``retry``, or by default one attempt per backend on every failure ``on`` names."""
        if self.retry is not None:
            return self.retry
        return Retry(attempts=min(len(self.targets), 10))

    def upstream_name_on(self, target: ModelBackend) -> str:
        """The model name ``target``'s backend is sent."""
        return target.backend_model or self.name

    @property
    def upstream_name(self) -> str:
        return self.upstream_name_on(self.targets[0])


class HeaderNames(_Strict):
    """The request headers the processor sets for routing (and metrics read)."""

    model: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")] = "x-ai-gateway-model"
    backend: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")] = "x-ai-gateway-backend"


#: Request headers whose values are secrets: never a label's source.
_CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "cookie",
        "set-cookie",
    }
)
#: Labels the families already have, or that Prometheus gives a meaning of its own.
_RESERVED_LABELS = frozenset(
    {"backend", "model", "status", "type", "le", "quantile", "job", "instance"}
)
_RESERVED_LABEL_PREFIXES = ("gen_ai", "error", "otel", "__")


def _lowercase(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


#: A request header's name, lowercased as Envoy passes header names.
_HeaderName = Annotated[
    str, BeforeValidator(_lowercase), Field(pattern=r"^[a-z0-9-]+$", max_length=100)
]


def _refuse_credentials(header: str, use: str) -> str:
    """``header``, unless its values are secrets; ``use`` says what it cannot be then."""
    if header in _CREDENTIAL_HEADERS:
        raise ValueError(f"{header} carries credentials; {use}")
    return header


#: Most combinations of header label values (each label's values, other and none).
MAX_HEADER_LABEL_COMBINATIONS = 10_000


class LabelFromHeader(_Strict):
    """A metric label from a request header: the header's value when ``values`` lists
    it, ``other`` when not, ``none`` when the request has no such header."""

    header: _HeaderName
    label: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=60)]
    values: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        min_length=1, max_length=100
    )

    @field_validator("header")
    @classmethod
    def _not_a_secret(cls, value: str) -> str:
        return _refuse_credentials(value, "it cannot be a label")

    @field_validator("label")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in _RESERVED_LABELS or value.startswith(_RESERVED_LABEL_PREFIXES):
            raise ValueError(f"{value!r} is a label the metrics already have or reserve")
        return value

    @field_validator("values")
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        for value in ("other", "none"):
            if value in values:
                raise ValueError(f"{value!r} is what the label says for unlisted or no values")
        if len(set(values)) != len(values):
            raise ValueError("values must be distinct")
        return values


class MetricsOptions(_Strict):
    """Which metric families to export and the labels taken from request headers."""

    schema_: Literal["aigateway", "genai", "both"] = Field(default="aigateway", alias="schema")
    labels_from_headers: list[LabelFromHeader] = Field(default_factory=list, max_length=4)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _distinct(self) -> MetricsOptions:
        labels = [h.label for h in self.labels_from_headers]
        headers = [h.header for h in self.labels_from_headers]
        if len(set(labels)) != len(labels):
            raise ValueError("labels_from_headers: each label must have its own name")
        if len(set(headers)) != len(headers):
            raise ValueError("labels_from_headers: each header may give one label")
        combinations = math.prod(len(h.values) + 2 for h in self.labels_from_headers)
        if combinations > MAX_HEADER_LABEL_COMBINATIONS:
            raise ValueError(
                f"labels_from_headers: {combinations} combinations of values (with other"
                f" and none) is more than {MAX_HEADER_LABEL_COMBINATIONS}; list fewer values"
            )
        return self


#: Window lengths of ``limits.rules[].*.per``, in seconds.
WINDOWS = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}
Per = Literal["minute", "hour", "day"]


class CountLimit(_Strict):
    """At most ``limit`` tokens (or requests) in any window of length ``per``."""

    limit: int = Field(gt=0, le=10**15)
    per: Per


class UsdLimit(_Strict):
    """At most ``limit`` US dollars (from ``models[].price``) in any window of ``per``."""

    limit: float = Field(gt=0, le=10**6, allow_inf_nan=False)
    per: Per


class LimitKey(_Strict):
    """One budget per value of a request header (a request without it shares the
    budget of every other request without it)."""

    header: _HeaderName

    @field_validator("header")
    @classmethod
    def _not_a_secret(cls, value: str) -> str:
        return _refuse_credentials(value, "budgets cannot be keyed on it")


class LimitRule(_Strict):
    """One budget (docs/limits.md): exactly one of
    ``tokens``, ``usd`` or ``requests``, per ``key`` value, for ``models`` (default all)."""

    name: Annotated[str, Field(pattern=_NAME, max_length=60)]
    key: LimitKey | None = None
    models: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    tokens: CountLimit | None = None
    usd: UsdLimit | None = None
    requests: CountLimit | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> LimitRule:
        given = [k for k in ("tokens", "usd", "requests") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of tokens, usd or requests")
        return self

    @property
    def kind(self) -> str:
        return "tokens" if self.tokens else "usd" if self.usd else "requests"

    @property
    def window_seconds(self) -> float:
        limit = self.tokens or self.usd or self.requests
        assert limit is not None
        return WINDOWS[limit.per]

    def describe(self) -> str:
        """One line for ``check-config``."""
        limit = self.tokens or self.usd or self.requests
        assert limit is not None
        amount = f"${limit.limit:g}" if self.usd else f"{limit.limit} {self.kind}"
        key = f"per {self.key.header}" if self.key else "shared"
        models = ", ".join(self.models) if self.models else "every model"
        return f"{self.name}: {amount} per {limit.per}, {key}, {models}"


class RedisLogin(_Strict):
    """``limits.redis``: how the gateway logs in to the Redis of its store; the password
    is a secret reference, so it stays out of the file (docs/limits.md)."""

    #: A Redis ACL user; none: Redis's ``default`` user.
    username: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")] | None = None
    password: SecretRef | None = None
    #: ``rediss://`` only: the CA certificates (PEM) that verify the server, relative to
    #: the config file; none: the system's.
    ca_file: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _user_needs_password(self) -> RedisLogin:
        if self.username is not None and self.password is None:
            raise ValueError("username needs a password")
        return self


class LimitsOptions(_Strict):
    """``limits:``: where budgets are kept and the rules every request must pass."""

    #: ``memory`` (one machine, every ``serve --workers`` process), ``redis://HOST:PORT/DB``
    #: or ``rediss://HOST:PORT/DB`` (TLS) (every replica).
    store: str = "memory"
    redis: RedisLogin | None = None
    on_store_error: Literal["allow", "deny"] = "allow"
    rules: list[LimitRule] = Field(default_factory=list, max_length=100)

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value == "memory":
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError("must be memory, redis://HOST:PORT/DB or rediss://HOST:PORT/DB")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("has a bad port") from None
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise ValueError("the path of redis://HOST:PORT/DB must be a database number")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials (give them in limits.redis)")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return value

    @field_validator("redis")
    @classmethod
    def _redis_login(cls, value: RedisLogin | None, info: ValidationInfo) -> RedisLogin | None:
        store = info.data.get("store", "")  # absent when invalid: that error is enough
        if value is None or not store:
            return value
        if not store.startswith(("redis://", "rediss://")):
            raise ValueError("only for a redis:// or rediss:// store")
        if value.ca_file is not None and not store.startswith("rediss://"):
            raise ValueError("ca_file is only for a rediss:// (TLS) store")
        return value

    @property
    def in_redis(self) -> bool:
        return self.store.startswith(("redis://", "rediss://"))


class GatewayConfig(_Strict):
    backends: list[Backend] = Field(min_length=1)
    models: list[Model] = Field(min_length=1)
    headers: HeaderNames = HeaderNames()
    metrics: MetricsOptions = MetricsOptions()
    limits: LimitsOptions = LimitsOptions()
    #: Largest request body Envoy buffers; bigger ones get 413.
    max_request_bytes: int = Field(default=32 * 1024 * 1024, gt=0, le=256 * 1024 * 1024)
    #: Request body bytes one processor holds at once; a request past it gets a 503.
    max_body_bytes_in_flight: int = Field(default=128 * 1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        names = [b.name for b in self.backends]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"backends[{i}].name: duplicate backend name {name!r}")
        seen: set[str] = set()
        for i, model in enumerate(self.models):
            if model.name in seen:
                raise ValueError(f"models[{i}].name: duplicate model name {model.name!r}")
            seen.add(model.name)
            for j, target in enumerate(model.targets):
                if target.backend not in names:
                    where = "backend" if model.backends is None else f"backends[{j}].backend"
                    raise ValueError(
                        f"models[{i}].{where}: no backend named {target.backend!r}"
                        f" (backends: {', '.join(names)})"
                    )
                schema = self.backend(target.backend).schema_
                problem = _google_model_problem(schema, model, target)
                if problem is not None:
                    key = "name"  # the model's name goes upstream, unless a backend_model does
                    if target.backend_model is not None:
                        key = (
                            "backend_model"
                            if model.backends is None
                            else f"backends[{j}].backend_model"
                        )
                    raise ValueError(f"models[{i}].{key}: {problem}")
        if self.max_body_bytes_in_flight < self.max_request_bytes:
            raise ValueError(
                "max_body_bytes_in_flight must be at least max_request_bytes"
                f" ({self.max_request_bytes}), or the largest request is always refused"
            )
        if self.headers.model == self.headers.backend:
            raise ValueError("headers: model and backend header names must differ")
        for i, label in enumerate(self.metrics.labels_from_headers):
            if label.header in (self.headers.model, self.headers.backend):
                raise ValueError(
                    f"metrics.labels_from_headers[{i}].header: {label.header} is a routing"
                    " header the processor sets"
                )
        self._check_limits()
        return self

    def _check_limits(self) -> None:
        models = {m.name: m for m in self.models}
        names = [r.name for r in self.limits.rules]
        for i, rule in enumerate(self.limits.rules):
            if rule.name in names[:i]:
                raise ValueError(f"limits.rules[{i}].name: duplicate rule name {rule.name!r}")
            for name in rule.models or ():
                if name not in models:
                    raise ValueError(f"limits.rules[{i}].models: no model named {name!r}")
            routing = (self.headers.model, self.headers.backend)
            if rule.key is not None and rule.key.header in routing:
                raise ValueError(
                    f"limits.rules[{i}].key.header: {rule.key.header} is a routing header the"
                    " processor sets"
                )
            if rule.usd is not None:
                unpriced = [n for n in rule.models or models if models[n].price is None]
                if unpriced:
                    raise ValueError(
                        f"limits.rules[{i}].usd: models without a price: {', '.join(unpriced)}"
                        " (give them models[].price, or list the rule's models)"
                    )

    def backend(self, name: str) -> Backend:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)


# One segment of a Google model resource name: no dot segments, escapes or delimiters.
_GOOGLE_MODEL_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")


def _google_model_problem(schema: Schema, model: Model, target: ModelBackend) -> str | None:
    """Why ``model``'s upstream name on ``target`` cannot go in a Gemini or Vertex AI
    path, if it cannot: it becomes a path segment of the backend's URL."""
    if schema not in ("gcp-gemini", "gcp-vertex-ai"):
        return None
    name = model.upstream_name_on(target)
    segments = name.split("/")
    if schema == "gcp-gemini" and len(segments) == 2 and segments[0] in ("models", "tunedModels"):
        segments = segments[1:]  # the Gemini API's own collections
    if len(segments) == 1 and _GOOGLE_MODEL_SEGMENT.fullmatch(segments[0]):
        return None
    return (
        f"{name[:100]!r} is not a {schema} model name (letters, digits, '.', '-', '_', '@';"
        " no '/', '..', '%', '?' or '#')"
    )


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _format_validation(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors(include_url=False, include_input=False):
        loc = tuple(p for p in e["loc"] if p not in ("function-after",))
        msg = e["msg"].removeprefix("Value error, ")
        where = _loc(loc)
        if ":" in msg and not where and re.match(r"^[a-z_]+(\[\d+\])?\.", msg):
            lines.append(f"{source}: {msg}")  # a cross-reference check names its own path
        else:
            lines.append(f"{source}: {where or '<top>'}: {msg}")
    return "\n".join(lines)


def parse_config(doc: Any, source: str = "<config>") -> GatewayConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with backends and models")
    try:
        return GatewayConfig.model_validate(doc)
    except ValidationError as err:
        raise ConfigError(_format_validation(source, err)) from None


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and validate a YAML (or JSON) config file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    return parse_config(doc, source)


@dataclass(slots=True, frozen=True)
class RedisCredentials:
    """``limits.redis`` read at start: what the Redis store logs in with."""

    username: str | None = None
    password: Secret | None = None
    #: ``rediss://``: the CA certificates (PEM) that verify the server; none: the system's.
    ca_pem: str | None = None


class ResolvedSecrets:
    """The secrets a config names, read once at start (never logged)."""

    def __init__(self, config: GatewayConfig, base_dir: Path, source: str = "<config>") -> None:
        self.api_keys: dict[str, Secret] = {}
        self.aws: dict[str, tuple[Secret, Secret, Secret | None] | None] = {}
        #: The service-account key files' contents (JSON holding a private key).
        self.gcp: dict[str, Secret] = {}
        self.redis, problems = _redis_credentials(config, base_dir, source)
        for i, backend in enumerate(config.backends):
            auth = backend.auth
            if auth is None:
                continue
            try:
                if auth.api_key is not None:
                    self.api_keys[backend.name] = auth.api_key.resolve(base_dir)
                elif auth.aws is not None:
                    aws = auth.aws
                    if aws.access_key_id is None or aws.secret_access_key is None:
                        self.aws[backend.name] = None  # botocore's default chain
                    else:
                        self.aws[backend.name] = (
                            aws.access_key_id.resolve(base_dir),
                            aws.secret_access_key.resolve(base_dir),
                            aws.session_token.resolve(base_dir) if aws.session_token else None,
                        )
                elif auth.gcp is not None:
                    ref = SecretRef(file=auth.gcp.service_account_file)
                    self.gcp[backend.name] = ref.resolve(base_dir)
            except ValueError as exc:
                where = "auth.gcp.service_account_file" if auth.gcp is not None else "auth"
                problems.append(f"{source}: backends[{i}].{where}: {exc}")
        if problems:
            raise ConfigError("\n".join(problems))


def _redis_credentials(
    config: GatewayConfig, base_dir: Path, source: str
) -> tuple[RedisCredentials, list[str]]:
    """``limits.redis`` read now, and what is wrong with it."""
    login = config.limits.redis
    if login is None:
        return RedisCredentials(), []
    problems = []
    password = None
    if login.password is not None:
        try:
            password = login.password.resolve(base_dir)
        except ValueError as exc:
            problems.append(f"{source}: limits.redis.password: {exc}")
    ca_pem = None
    if login.ca_file is not None:
        path = config_relative(login.ca_file, base_dir)
        try:
            ca_pem = path.read_text(encoding="utf-8")
            ssl.create_default_context(cadata=ca_pem)  # a bad file fails now, not per call
        except (ssl.SSLError, UnicodeDecodeError, ValueError):  # before OSError, its base
            problems.append(f"{source}: limits.redis.ca_file: {path} holds no PEM certificate")
        except OSError as exc:
            problems.append(f"{source}: limits.redis.ca_file: cannot read {path}: {exc.strerror}")
    return RedisCredentials(login.username, password, ca_pem), problems


def load_secrets(config: GatewayConfig, path: str | os.PathLike[str]) -> ResolvedSecrets:
    return ResolvedSecrets(config, Path(path).resolve().parent, str(path))
