"""The resolved routing table: for each configured model, its backend, upstream name,
credentials and translator. Built once at start and shared by every processor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from aigateway.extproc.gateway.aws_auth import AwsAuthError, AwsCredentials, AwsSigV4Signer
from aigateway.extproc.gateway.body_budget import BodyBudget
from aigateway.extproc.gateway.config import (
    Backend,
    ConfigError,
    GatewayConfig,
    Model,
    ResolvedSecrets,
    Secret,
)
from aigateway.extproc.gateway.forwarded_headers import (
    BASELINE,
    ForwardedHeaders,
    forwarded_headers,
)
from aigateway.extproc.gateway.gcp_auth import (
    GcpAuthError,
    GcpTokenError,
    GcpTokenSource,
    default_source,
    service_account_source,
)
from aigateway.extproc.gateway.limits.configured import limiter_from_config
from aigateway.extproc.gateway.limits.limiter import Limiter
from aigateway.translators.contract import Translator
from aigateway.translators.matrix import (
    BackendOptions,
    ClientApi,
    RouteTranslators,
    route_translators,
)


class BackendAuthError(Exception):
    """The backend's credentials cannot be had for this request (a token endpoint that
    refuses or does not answer). ``status`` is what the client gets: 401 when the
    credentials were refused, 502 when their source failed; ``message`` says why without
    any secret in it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Authenticator(Protocol):
    """Adds a backend's credentials to the final upstream request (its exact path and
    body: signing must come last)."""

    async def headers(self, method: str, path: str, body: bytes) -> tuple[tuple[str, str], ...]:
        """The headers to set; raises :class:`BackendAuthError` when credentials cannot
        be had. Must not block the event loop (network I/O goes to a thread)."""
        ...

    def secret_values(self) -> tuple[bytes, ...]:
        """The credential values that must never reach a client."""
        ...

    def describe(self) -> str:
        """Which credentials these are, without their values (for startup messages)."""
        ...


class NoAuth:
    __slots__ = ()

    async def headers(self, method: str, path: str, body: bytes) -> tuple[tuple[str, str], ...]:
        return ()

    def secret_values(self) -> tuple[bytes, ...]:
        return ()

    def describe(self) -> str:
        return "no credentials (the backend has no auth:)"


class ApiKeyAuth:
    """A static API key in the header the backend's schema expects."""

    __slots__ = ("_headers", "_secrets")

    def __init__(self, header: str, value: Secret, prefix: str = "") -> None:
        self._headers = ((header, prefix + value.reveal()),)
        self._secrets = (value.reveal().encode(),)

    async def headers(self, method: str, path: str, body: bytes) -> tuple[tuple[str, str], ...]:
        return self._headers

    def secret_values(self) -> tuple[bytes, ...]:
        return self._secrets

    def describe(self) -> str:
        return f"an API key in {self._headers[0][0]}"

    def __repr__(self) -> str:
        return f"ApiKeyAuth({self._headers[0][0]!r}, '***')"


def _api_key_auth(schema: str, key: Secret) -> ApiKeyAuth:
    if schema == "azure-openai":
        return ApiKeyAuth("api-key", key)
    if schema == "anthropic":
        return ApiKeyAuth("x-api-key", key)
    if schema == "gcp-gemini":
        return ApiKeyAuth("x-goog-api-key", key)
    return ApiKeyAuth("authorization", key, "Bearer ")


class GcpOAuth:
    """A Google OAuth2 access token as a bearer token (Vertex AI), cached and refreshed
    in a thread by :class:`GcpTokenSource`."""

    __slots__ = ("_tokens",)

    def __init__(self, tokens: GcpTokenSource) -> None:
        self._tokens = tokens

    async def headers(self, method: str, path: str, body: bytes) -> tuple[tuple[str, str], ...]:
        try:
            token = await self._tokens.token()
        except GcpTokenError as exc:
            raise BackendAuthError(exc.status, exc.message) from None
        return (("authorization", "Bearer " + token),)

    def secret_values(self) -> tuple[bytes, ...]:
        return self._tokens.secret_values()

    def describe(self) -> str:
        return f"OAuth2 access tokens from {self._tokens.source}"

    def __repr__(self) -> str:
        return f"GcpOAuth({self._tokens!r})"


def backend_options(backend: Backend, upstream_model: str) -> BackendOptions:
    """The plain options the translator matrix takes, from a backend's config."""
    return BackendOptions(
        schema=backend.schema_,
        upstream_model=upstream_model,
        api_version=backend.api_version or "",
        anthropic_version=backend.anthropic_version,
        default_max_tokens=backend.default_max_tokens,
        project=backend.project or "",
        region=backend.region or "",
    )


@dataclass(slots=True, frozen=True)
class ModelRoute:
    """Everything needed to send one model's requests upstream."""

    model: Model
    backend: Backend
    auth: Authenticator
    #: Each client API's translator on this route (translators.matrix).
    translators: RouteTranslators
    #: The client headers the backend receives (docs/architecture.md).
    forwarded: ForwardedHeaders = BASELINE

    def translator(self, api: ClientApi, client_version: str | None = None) -> Translator:
        """A new translator for one request in ``api`` (``client_version``: the client's
        ``anthropic-version``); raises ``UnsupportedEndpoint`` when the backend has none."""
        return self.translators.translator(api, client_version)

    #: The model spreads over several backends: Envoy picks this one per attempt and the
    #: processor in the cluster's upstream filter chain translates for it
    #: (docs/architecture.md, "Routing over several backends").
    several: bool = False

    @property
    def upstream_path_prefix(self) -> str:
        return self.backend.path_prefix


class RoutingTable:
    """Model name -> :class:`ModelRoute`, from a validated config and its secrets."""

    def __init__(self, config: GatewayConfig, secrets: ResolvedSecrets) -> None:
        self.config = config
        self.body_budget = BodyBudget(config.max_body_bytes_in_flight)
        self.model_header = config.headers.model
        self.backend_header = config.headers.backend
        auth: dict[str, Authenticator] = {}
        for i, backend in enumerate(config.backends):
            if backend.name in secrets.api_keys:
                auth[backend.name] = _api_key_auth(backend.schema_, secrets.api_keys[backend.name])
            elif backend.name in secrets.aws or backend.schema_ == "aws-bedrock":
                # Without auth:, Bedrock signs with botocore's default credential chain.
                where = "auth.aws" if backend.auth is not None else "auth (not set)"
                try:
                    auth[backend.name] = _sigv4_auth(backend, secrets.aws.get(backend.name))
                except AwsAuthError as exc:
                    raise ConfigError(f"backends[{i}].{where}: {exc}") from None
            elif backend.schema_ == "gcp-vertex-ai":
                # Without auth:, Vertex AI uses Application Default Credentials.
                key_file = secrets.gcp.get(backend.name)
                where = "auth.gcp.service_account_file" if key_file else "auth (not set)"
                try:
                    tokens = (
                        service_account_source(key_file.reveal())
                        if key_file is not None
                        else default_source()
                    )
                except GcpAuthError as exc:
                    raise ConfigError(f"backends[{i}].{where}: {exc}") from None
                auth[backend.name] = GcpOAuth(tokens)
            else:
                auth[backend.name] = NoAuth()
        self._auth = auth
        self.routes: dict[str, ModelRoute] = {}
        self._by_backend: dict[tuple[str, str], ModelRoute] = {}
        for model in config.models:
            for target in model.targets:
                backend = config.backend(target.backend)
                options = backend_options(backend, model.upstream_name_on(target))
                route = ModelRoute(
                    model=model,
                    backend=backend,
                    auth=auth[backend.name],
                    translators=route_translators(options),
                    several=model.several,
                    forwarded=forwarded_headers(options, backend.forward_headers),
                )
                self._by_backend[model.name, backend.name] = route
                # A model's route is its first backend's until an answer says otherwise.
                self.routes.setdefault(model.name, route)
        # What the attempts of a model with several backends may need of the client's
        # headers: what any of its backends receives, the version the Messages API reads,
        # the header labels' headers (docs/architecture.md, "Routing over several backends").
        extra = {"anthropic-version", *(h.header for h in config.metrics.labels_from_headers)}
        self._attempt_headers: dict[str, ForwardedHeaders] = {}
        for model in config.models:
            if model.several:
                allowed = [self._by_backend[model.name, t.backend].forwarded for t in model.targets]
                self._attempt_headers[model.name] = ForwardedHeaders(
                    frozenset(extra).union(*(f.names for f in allowed)),
                    tuple(dict.fromkeys(p for f in allowed for p in f.prefixes)),
                )
        #: The budgets of ``limits:`` (``None`` without rules: no request pays for them).
        self.limiter: Limiter | None = limiter_from_config(config, secrets)

    def lookup(self, model: str) -> ModelRoute | None:
        """The route of a model name clients send, ``None`` for one not configured.
        For a model with several backends: the route to its first."""
        return self.routes.get(model)

    def lookup_on(self, model: str, backend: str) -> ModelRoute | None:
        """The route of ``model`` on one of its backends, ``None`` if it has no such one."""
        return self._by_backend.get((model, backend))

    def attempt_headers(self, model: str) -> ForwardedHeaders:
        """The client headers the attempts of ``model`` (several backends) may need."""
        return self._attempt_headers.get(model, BASELINE)

    def backends_of(self, model: str) -> tuple[str, ...]:
        """The names of the backends a model spreads over."""
        route = self.routes.get(model)
        return tuple(t.backend for t in route.model.targets) if route is not None else ()

    @property
    def model_names(self) -> frozenset[str]:
        return frozenset(self.routes)

    @property
    def backend_names(self) -> frozenset[str]:
        return frozenset(b.name for b in self.config.backends)

    def credential_notes(self, *, unconfigured_only: bool = False) -> list[str]:
        """One line per backend saying which credentials its requests carry (only the
        backends without ``auth:`` when ``unconfigured_only``)."""
        notes: list[str] = []
        for backend in self.config.backends:
            if unconfigured_only and backend.auth is not None:
                continue
            notes.append(f"backend {backend.name}: {self._auth[backend.name].describe()}")
        return notes


class SigV4Auth:
    """AWS SigV4 over the final body. Static credentials sign inline (CPU only);
    refreshable ones (roles, SSO) may fetch new credentials, so they sign in a thread."""

    __slots__ = ("_in_thread", "_signer")

    def __init__(self, signer: AwsSigV4Signer) -> None:
        self._signer = signer
        self._in_thread = signer.refreshable

    async def headers(self, method: str, path: str, body: bytes) -> tuple[tuple[str, str], ...]:
        if self._in_thread:
            return await asyncio.to_thread(self._signer.headers, method, path, body)
        return self._signer.headers(method, path, body)

    def secret_values(self) -> tuple[bytes, ...]:
        return self._signer.secret_values()

    def describe(self) -> str:
        return f"AWS SigV4 with {self._signer.credential_source}, region {self._signer.region}"

    def __repr__(self) -> str:
        return f"SigV4Auth({self._signer!r})"


def _sigv4_auth(
    backend: Backend, credentials: tuple[Secret, Secret, Secret | None] | None
) -> Authenticator:
    aws = backend.auth.aws if backend.auth is not None else None
    explicit = None
    if credentials is not None:
        key, secret, token = credentials
        explicit = AwsCredentials(key.reveal(), secret.reveal(), token.reveal() if token else None)
    region = aws.region if aws is not None else _region_of(backend.host)
    signer = AwsSigV4Signer(
        scheme="https" if backend.tls else "http",
        host=backend.authority,
        region=region,
        credentials=explicit,
    )
    return SigV4Auth(signer)


def _region_of(host: str) -> str | None:
    """The region in an AWS endpoint host (``bedrock-runtime.us-east-1.amazonaws.com``)."""
    parts = host.split(".")
    if len(parts) >= 4 and parts[-2] == "amazonaws" and parts[0].startswith("bedrock"):
        return parts[1]
    return None
