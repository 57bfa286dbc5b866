"""The resolved routing table: for each configured model, its backend, upstream name,
credentials and translator. Built once at start and shared by every processor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from extproc.config import Backend, GatewayConfig, Model, ResolvedSecrets, Secret
from translators.base import ChatTranslator
from translators.openai import OpenAIChatTranslator

# Client credentials are for the gateway, never for a backend.
CLIENT_AUTH_HEADERS = ("authorization", "x-api-key", "api-key")


class Authenticator(Protocol):
    """Adds a backend's credentials to the final upstream request."""

    def headers(self, method: str, path: str, body: bytes) -> tuple[tuple[str, str], ...]: ...


class NoAuth:
    __slots__ = ()

    def headers(self, method: str, path: str, body: bytes) -> tuple[tuple[str, str], ...]:
        return ()


class ApiKeyAuth:
    """A static API key in the header the backend's schema expects."""

    __slots__ = ("_headers",)

    def __init__(self, header: str, value: Secret, prefix: str = "") -> None:
        self._headers = ((header, prefix + value.reveal()),)

    def headers(self, method: str, path: str, body: bytes) -> tuple[tuple[str, str], ...]:
        return self._headers

    def __repr__(self) -> str:
        return f"ApiKeyAuth({self._headers[0][0]!r}, '***')"


def _api_key_auth(schema: str, key: Secret) -> ApiKeyAuth:
    if schema == "azure-openai":
        return ApiKeyAuth("api-key", key)
    if schema == "anthropic":
        return ApiKeyAuth("x-api-key", key)
    return ApiKeyAuth("authorization", key, "Bearer ")


TranslatorFactory = Callable[[], ChatTranslator]


def _translator_factory(backend: Backend, upstream_model: str) -> TranslatorFactory:
    schema = backend.schema_
    if schema == "openai":
        return lambda: OpenAIChatTranslator(upstream_model)
    raise ValueError(f"schema {schema!r} is not supported yet")


@dataclass(slots=True, frozen=True)
class ModelRoute:
    """Everything needed to send one model's requests upstream."""

    model: Model
    backend: Backend
    auth: Authenticator
    new_translator: TranslatorFactory

    @property
    def upstream_path_prefix(self) -> str:
        return self.backend.path_prefix


class RoutingTable:
    """Model name -> :class:`ModelRoute`, from a validated config and its secrets."""

    def __init__(self, config: GatewayConfig, secrets: ResolvedSecrets) -> None:
        self.config = config
        self.model_header = config.headers.model
        self.backend_header = config.headers.backend
        auth: dict[str, Authenticator] = {}
        for backend in config.backends:
            if backend.name in secrets.api_keys:
                auth[backend.name] = _api_key_auth(backend.schema_, secrets.api_keys[backend.name])
            elif backend.name in secrets.aws:
                auth[backend.name] = _sigv4_auth(backend, secrets.aws[backend.name])
            else:
                auth[backend.name] = NoAuth()
        self.routes: dict[str, ModelRoute] = {}
        for model in config.models:
            backend = config.backend(model.backend)
            self.routes[model.name] = ModelRoute(
                model=model,
                backend=backend,
                auth=auth[backend.name],
                new_translator=_translator_factory(backend, model.upstream_name),
            )

    def lookup(self, model: str) -> ModelRoute | None:
        return self.routes.get(model)

    @property
    def model_names(self) -> frozenset[str]:
        return frozenset(self.routes)

    @property
    def backend_names(self) -> frozenset[str]:
        return frozenset(b.name for b in self.config.backends)


def _sigv4_auth(
    backend: Backend, credentials: tuple[Secret, Secret, Secret | None] | None
) -> Authenticator:
    raise ValueError("aws-bedrock is not supported yet")
