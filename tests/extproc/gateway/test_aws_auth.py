"""SigV4 signing: checked against a from-the-spec implementation and against botocore."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import sys
from typing import Any
from urllib.parse import quote, urlsplit

import botocore.auth
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials

from aigateway.extproc.gateway.aws_auth import AwsAuthError, AwsCredentials, AwsSigV4Signer

NOW = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
AMZ_DATE = "20240102T030405Z"
HOST = "bedrock-runtime.us-east-1.amazonaws.com"
MODEL_PATH = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
BODY = b'{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}'
KEYS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))


def spec_signature(
    *,
    method: str,
    host: str,
    path: str,
    query: str,
    body: bytes,
    access_key: str,
    secret_key: str,
    token: str | None,
    region: str,
    service: str,
) -> str:
    """The Authorization header as the SigV4 documentation builds it, step by step."""
    headers = {"host": host, "x-amz-date": AMZ_DATE}
    if token:
        headers["x-amz-security-token"] = token
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            # Every service but S3: URI-encode each path segment once more.
            "/".join(quote(segment, safe="~") for segment in path.split("/")),
            "&".join(sorted(query.split("&"))) if query else "",
            "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
            signed,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{AMZ_DATE[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", AMZ_DATE, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (AMZ_DATE[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


@pytest.mark.parametrize("token", [None, "IQoJb3JpZ2luX2VjEXAMPLETOKEN"])
def test_signature_matches_the_spec(token: str | None) -> None:
    keys = AwsCredentials(KEYS.access_key_id, KEYS.secret_access_key, token)
    signer = AwsSigV4Signer(scheme="https", host=HOST, region="us-east-1", credentials=keys)
    headers = dict(signer.headers("POST", MODEL_PATH, BODY))
    expected = {
        "authorization": spec_signature(
            method="POST",
            host=HOST,
            path=MODEL_PATH,
            query="",
            body=BODY,
            access_key=keys.access_key_id,
            secret_key=keys.secret_access_key,
            token=token,
            region="us-east-1",
            service="bedrock",
        ),
        "x-amz-date": AMZ_DATE,
    }
    if token:
        expected["x-amz-security-token"] = token
    assert headers == expected


def botocore_resign(
    url: str, host: str, body: bytes, credentials: Credentials, region: str
) -> dict[str, str]:
    """Sign the same request straight through botocore (what boto3 does)."""
    request = AWSRequest(method="POST", url=url, data=body, headers={"host": host})
    SigV4Auth(credentials, "bedrock", region).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items() if k.lower() != "host"}


@pytest.mark.parametrize(
    ("scheme", "host", "path"),
    [
        ("https", HOST, MODEL_PATH),
        ("https", HOST, MODEL_PATH + "-stream"),
        # A prefix, a non-default port and a query string.
        ("http", "127.0.0.1:8443", "/bedrock" + MODEL_PATH + "?b=2&a=1"),
        (
            "https",
            HOST,
            "/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Ainference-profile"
            "%2Fus.anthropic.claude-3-haiku/converse",
        ),
    ],
)
def test_signature_matches_botocore(scheme: str, host: str, path: str) -> None:
    signer = AwsSigV4Signer(scheme=scheme, host=host, region="us-west-2", credentials=KEYS)
    ours = dict(signer.headers("POST", path, BODY))
    theirs = botocore_resign(
        f"{scheme}://{host}{path}",
        host,
        BODY,
        Credentials(KEYS.access_key_id, KEYS.secret_access_key),
        "us-west-2",
    )
    assert ours == theirs
    parts = urlsplit(path)
    assert ours["authorization"] == spec_signature(
        method="POST",
        host=host,
        path=parts.path,
        query=parts.query,
        body=BODY,
        access_key=KEYS.access_key_id,
        secret_key=KEYS.secret_access_key,
        token=None,
        region="us-west-2",
        service="bedrock",
    )


def test_model_id_colon_is_escaped_twice_in_the_canonical_request() -> None:
    # The path goes upstream with %3A; the canonical request escapes the % again.
    request = AWSRequest(method="POST", url=f"https://{HOST}{MODEL_PATH}", data=BODY)
    canonical = SigV4Auth(Credentials("a", "b"), "bedrock", "us-east-1").canonical_request(request)
    assert canonical.splitlines()[1] == (
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse"
    )


def test_any_change_breaks_the_signature() -> None:
    signer = AwsSigV4Signer(scheme="https", host=HOST, region="us-east-1", credentials=KEYS)
    base = dict(signer.headers("POST", MODEL_PATH, BODY))["authorization"]
    assert dict(signer.headers("POST", MODEL_PATH, BODY + b" "))["authorization"] != base
    unescaped = MODEL_PATH.replace("%3A", ":")
    assert dict(signer.headers("POST", unescaped, BODY))["authorization"] != base
    other_host = AwsSigV4Signer(
        scheme="https", host=HOST + ":443", region="us-east-1", credentials=KEYS
    )
    assert dict(other_host.headers("POST", MODEL_PATH, BODY))["authorization"] != base


def test_sign_takes_a_full_url() -> None:
    signer = AwsSigV4Signer(scheme="https", host=HOST, region="us-east-1", credentials=KEYS)
    assert signer.sign("post", f"https://{HOST}{MODEL_PATH}", BODY) == signer.headers(
        "POST", MODEL_PATH, BODY
    )


def test_secrets_stay_out_of_repr() -> None:
    keys = AwsCredentials("AKID", "very-secret", "token-secret")
    signer = AwsSigV4Signer(scheme="https", host=HOST, region="us-east-1", credentials=keys)
    for text in (repr(keys), repr(signer)):
        assert "very-secret" not in text
        assert "token-secret" not in text


@pytest.fixture
def isolated_chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """botocore's default chain with nothing from this machine: no files, no IMDS."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("BOTO_CONFIG", str(tmp_path / "boto"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("isolated_chain")
def test_default_chain_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secretfromenv")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tokenfromenv")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    signer = AwsSigV4Signer(scheme="https", host=HOST)
    assert signer.region == "eu-central-1"
    headers = dict(signer.headers("POST", MODEL_PATH, BODY))
    assert headers["x-amz-security-token"] == "tokenfromenv"
    assert headers["authorization"] == spec_signature(
        method="POST",
        host=HOST,
        path=MODEL_PATH,
        query="",
        body=BODY,
        access_key="AKIDFROMENV",
        secret_key="secretfromenv",
        token="tokenfromenv",
        region="eu-central-1",
        service="bedrock",
    )


@pytest.mark.usefixtures("isolated_chain")
def test_no_credentials_is_a_clear_error() -> None:
    with pytest.raises(AwsAuthError, match="no AWS credentials"):
        AwsSigV4Signer(scheme="https", host=HOST, region="us-east-1")


@pytest.mark.usefixtures("isolated_chain")
def test_no_region_is_a_clear_error() -> None:
    with pytest.raises(AwsAuthError, match="no AWS region"):
        AwsSigV4Signer(scheme="https", host=HOST, credentials=KEYS)


def test_refreshable_credentials_are_read_per_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    issued: list[str] = []

    def refresh() -> dict[str, str]:
        issued.append(f"AKIDROTATED{len(issued)}")
        # Expiring within botocore's mandatory refresh window: every read refreshes.
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
        return {
            "access_key": issued[-1],
            "secret_key": "s",
            "token": "t",
            "expiry_time": expiry.isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")

    class FakeSession:
        def get_credentials(self) -> RefreshableCredentials:
            return credentials

        def get_config_variable(self, name: str) -> str | None:
            return "us-east-1" if name == "region" else None

    monkeypatch.setattr(botocore.session, "get_session", FakeSession)
    signer = AwsSigV4Signer(scheme="https", host=HOST)
    first = dict(signer.headers("POST", MODEL_PATH, BODY))["authorization"]
    second = dict(signer.headers("POST", MODEL_PATH, BODY))["authorization"]
    assert "Credential=AKIDROTATED1/" in first
    assert "Credential=AKIDROTATED2/" in second


def test_missing_botocore_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore.auth", None)
    with pytest.raises(AwsAuthError, match=r"aigateway\[aws\]"):
        AwsSigV4Signer(scheme="https", host=HOST, region="us-east-1", credentials=KEYS)
