"""AWS SigV4 verification for the Bedrock routes.

The mock re-signs the request it received with botocore's own signer (same method,
path as received, headers named in ``SignedHeaders``, ``x-amz-date`` and the exact
body) and compares signatures, so whatever the gateway signs must be byte-for-byte what
reached the upstream. botocore is imported lazily: it lives in the optional ``aws``
extra and the other routes do not need it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from multidict import MultiMapping

from .errors import MockError

__all__ = ["AwsCredentials", "verify_sigv4"]

_ALGORITHM = "AWS4-HMAC-SHA256"
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """The credentials the mock expects Bedrock requests to be signed with."""

    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    session_token: str | None = None
    service: str = "bedrock"


def verify_sigv4(
    credentials: AwsCredentials,
    method: str,
    raw_path: str,
    headers: MultiMapping[str],
    body: bytes,
) -> None:
    """Check the request's SigV4 ``Authorization`` header; raise :class:`MockError` if bad.

    ``raw_path`` is the path and query exactly as received (percent-escapes intact).
    Failures carry Bedrock's error types: ``MissingAuthenticationTokenException``,
    ``IncompleteSignatureException``, ``UnrecognizedClientException`` and
    ``InvalidSignatureException`` (all 403 except the incomplete signature, 400).
    """
    authorization = headers.get("authorization")
    if not authorization:
        raise MockError(
            403, "Missing Authentication Token", error_type="MissingAuthenticationTokenException"
        )
    access_key, scope, signed_headers, signature = _parse_authorization(authorization)
    if access_key != credentials.access_key_id:
        raise MockError(
            403,
            "The security token included in the request is invalid.",
            error_type="UnrecognizedClientException",
        )
    if credentials.session_token is not None and (
        headers.get("x-amz-security-token") != credentials.session_token
    ):
        raise MockError(
            403,
            "The security token included in the request is invalid.",
            error_type="UnrecognizedClientException",
        )
    amz_date = headers.get("x-amz-date")
    if not amz_date:
        raise MockError(
            400,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            error_type="IncompleteSignatureException",
        )
    content_sha = headers.get("x-amz-content-sha256")
    if content_sha not in (None, _UNSIGNED_PAYLOAD, hashlib.sha256(body).hexdigest()):
        raise MockError(403, _SIGNATURE_MISMATCH, error_type="InvalidSignatureException")
    expected = _signature(credentials, method, raw_path, headers, signed_headers, amz_date, body)
    if scope[1:] != [credentials.region, credentials.service, "aws4_request"] or not (
        hmac.compare_digest(expected, signature)
    ):
        raise MockError(403, _SIGNATURE_MISMATCH, error_type="InvalidSignatureException")


def _parse_authorization(value: str) -> tuple[str, list[str], list[str], str]:
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            fields[key] = val.strip()
    credential = fields.get("Credential", "")
    signed = fields.get("SignedHeaders", "")
    signature = fields.get("Signature", "")
    parts = credential.split("/")
    if algorithm != _ALGORITHM or len(parts) != 5 or not signed or not signature:
        raise MockError(
            400,
            f"Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
            f"parameters with algorithm {_ALGORITHM}.",
            error_type="IncompleteSignatureException",
        )
    return parts[0], parts[1:], signed.lower().split(";"), signature


def _headers_as_given(request: Any) -> Any:
    return request.headers


def _signature(
    credentials: AwsCredentials,
    method: str,
    raw_path: str,
    headers: MultiMapping[str],
    signed_headers: list[str],
    amz_date: str,
    body: bytes,
) -> str:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host = headers.get("host") or "localhost"
    request = AWSRequest(method=method, url=f"https://{host}{raw_path}", data=body)
    for name in signed_headers:
        for value in headers.getall(name, ()):
            request.headers[name] = value  # HTTPHeaders appends: repeated values survive
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(
        Credentials(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token
        ),
        credentials.service,
        credentials.region,
    )
    # Sign exactly the headers the client named (botocore would pick its own set).
    signer.headers_to_sign = _headers_as_given
    canonical = signer.canonical_request(request)
    result: str = signer.signature(signer.string_to_sign(request, canonical), request)
    return result
