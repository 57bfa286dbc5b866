"""AWS Signature Version 4 for the final upstream request (Bedrock), with botocore.

The signature covers the method, the path exactly as sent (percent escapes included:
botocore escapes it once more for the canonical request, as AWS expects for every
service but S3), the query, the ``host`` header Envoy sends upstream, and the body's
SHA-256. So signing must be the last change to the request.

botocore is the optional ``aws`` extra; it is imported only when a signer is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# The headers SigV4Auth adds that the upstream request must carry.
_SIGNATURE_HEADERS = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")


class AwsAuthError(RuntimeError):
    """AWS signing cannot work: botocore is missing or no credentials were found."""


@dataclass(slots=True, frozen=True)
class AwsCredentials:
    """Explicit credentials (from the config); secrets stay out of ``repr``."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def _botocore() -> tuple[Any, Any, Any, Any]:
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        from botocore.session import get_session
    except ImportError:
        raise AwsAuthError(
            "AWS SigV4 signing needs botocore: install aigateway[aws] (pip install botocore)"
        ) from None
    return SigV4Auth, AWSRequest, Credentials, get_session


class AwsSigV4Signer:
    """Signs requests to one AWS endpoint.

    ``host`` is the ``host`` header Envoy sends upstream (with the port when it is not
    the scheme's default). Without ``credentials``, botocore's default chain
    (environment, shared files, SSO, container and instance roles) is resolved once,
    here; refreshable credentials are re-read on every signature. Without ``region``,
    botocore's region (``AWS_DEFAULT_REGION``, the profile's) is used.
    """

    __slots__ = (
        "_auth_cls",
        "_credentials",
        "_host",
        "_origin",
        "_request_cls",
        "credential_source",
        "region",
        "service",
    )

    def __init__(
        self,
        *,
        scheme: str,
        host: str,
        region: str | None = None,
        credentials: AwsCredentials | None = None,
        service: str = "bedrock",
    ) -> None:
        sigv4_auth, aws_request, static_credentials, get_session = _botocore()
        self._auth_cls = sigv4_auth
        self._request_cls = aws_request
        session = None
        if credentials is not None:
            self._credentials: Any = static_credentials(
                credentials.access_key_id, credentials.secret_access_key, credentials.session_token
            )
            self.credential_source = "the credentials in the config"
        else:
            session = get_session()
            self._credentials = session.get_credentials()
            if self._credentials is None:
                raise AwsAuthError(
                    "no AWS credentials found: set auth.aws.access_key_id/secret_access_key"
                    " or configure botocore's default chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...)"
                )
            method = getattr(self._credentials, "method", None) or "unknown source"
            self.credential_source = f"botocore's default credential chain (found: {method})"
        if not region:
            region = (session or get_session()).get_config_variable("region")
            if not region:
                raise AwsAuthError(
                    "no AWS region: set auth.aws.region or AWS_DEFAULT_REGION,"
                    " or use a bedrock-runtime.REGION.amazonaws.com endpoint"
                )
        self.region: str = region
        self.service = service
        self._host = host
        self._origin = f"{scheme}://{host}"

    def secret_values(self) -> tuple[bytes, ...]:
        """The secret key and session token in use (never the access key id, which AWS
        error messages name routinely)."""
        frozen = self._credentials.get_frozen_credentials()
        return tuple(v.encode() for v in (frozen.secret_key, frozen.token) if v)

    @property
    def refreshable(self) -> bool:
        """True when signing may fetch new credentials (network I/O)."""
        return hasattr(self._credentials, "refresh_needed")

    def __repr__(self) -> str:
        return f"AwsSigV4Signer({self._origin!r}, region={self.region!r}, service={self.service!r})"

    def headers(self, method: str, path: str, body: bytes) -> tuple[tuple[str, str], ...]:
        """The headers to set on the upstream request: ``authorization``, ``x-amz-date``
        and ``x-amz-security-token`` (temporary credentials). ``path`` is exactly what goes
        upstream, query included."""
        return self.sign(method, self._origin + path, body, host=self._host)

    def sign(
        self, method: str, url: str, body: bytes, *, host: str | None = None
    ) -> tuple[tuple[str, str], ...]:
        """Sign ``method url`` with ``body``; ``host`` defaults to the URL's authority."""
        # Refreshable credentials refresh here, shortly before they expire (botocore).
        frozen = self._credentials.get_frozen_credentials()
        request = self._request_cls(
            method=method.upper(),
            url=url,
            data=body,
            headers={"host": host if host is not None else urlsplit(url).netloc},
        )
        self._auth_cls(frozen, self.service, self.region).add_auth(request)
        out: list[tuple[str, str]] = []
        for name in _SIGNATURE_HEADERS:
            value = request.headers.get(name)
            if value is not None:
                out.append((name, value))
        return tuple(out)
