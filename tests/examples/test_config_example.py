"""``examples/config.yaml`` is a valid gateway config covering every schema, passes
``aigateway check-config`` once its secrets exist, and gives a bootstrap Envoy accepts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from aigateway.extproc.gateway.config import SCHEMAS, load_config
from aigateway.extproc.ops.envoy_process import find_envoy
from aigateway.mock_backend import new_service_account_key
from tests.e2e.stack import AIGATEWAY
from tests.examples.conftest import EXAMPLES

CONFIG = EXAMPLES / "config.yaml"


def test_every_schema_and_auth_kind_is_shown() -> None:
    config = load_config(CONFIG)
    assert {b.schema_ for b in config.backends} == set(SCHEMAS)
    by_name = {b.name: b for b in config.backends}
    local = [b for b in config.backends if b.endpoint == "http://127.0.0.1:11434"]
    assert len(local) == 1 and local[0].schema_ == "openai" and local[0].auth is None
    openai_auth = by_name["openai"].auth
    assert openai_auth is not None and openai_auth.api_key is not None
    assert openai_auth.api_key.env == "OPENAI_API_KEY"
    bedrock_auth = by_name["bedrock"].auth
    assert bedrock_auth is not None and bedrock_auth.aws is not None
    vertex_auth = by_name["vertex"].auth
    assert vertex_auth is not None and vertex_auth.gcp is not None
    # Every backend serves at least one model.
    assert {t.backend for m in config.models for t in m.targets} == set(by_name)


def test_check_config_passes_once_the_secrets_exist(tmp_path: Path) -> None:
    shutil.copy(CONFIG, tmp_path / "config.yaml")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "anthropic-api-key").write_text("sk-ant-example\n")
    key_file, account = new_service_account_key("https://oauth2.googleapis.com/token")
    (tmp_path / "secrets" / "vertex-service-account.json").write_text(key_file)
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-example",
        "AZURE_OPENAI_API_KEY": "az-example",
        "GEMINI_API_KEY": "gk-example",
        # The bedrock backend signs with botocore's default chain: give it something.
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-example",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    checked = subprocess.run(
        [*AIGATEWAY, "check-config", "--config", str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    assert "11 model(s)" in checked.stdout
    # The model with several backends is explained in words.
    assert "gpt-4o-resilient -> spread over 3 backends:" in checked.stdout
    assert "openai (openai, https://api.openai.com) as gpt-4o: 75% of its requests" in (
        checked.stdout
    )
    # Each backend says which credentials its requests carry.
    assert "backend bedrock: AWS SigV4 with botocore's default credential chain (found: env)" in (
        checked.stdout
    )
    assert "backend openai: an API key in authorization" in checked.stdout
    assert "backend gemini: an API key in x-goog-api-key" in checked.stdout
    assert (
        f"backend vertex: OAuth2 access tokens from service account {account.client_email}"
        in checked.stdout
    )
    # Without them, the same file is refused naming each missing secret.
    env.pop("OPENAI_API_KEY")
    missing = subprocess.run(
        [*AIGATEWAY, "check-config", "--config", str(CONFIG)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert missing.returncode == 2
    assert "OPENAI_API_KEY is not set" in missing.stderr
    assert "anthropic-api-key" in missing.stderr
    assert "vertex-service-account.json" in missing.stderr


def test_its_envoy_bootstrap_validates(tmp_path: Path) -> None:
    bootstrap = subprocess.run(
        [*AIGATEWAY, "envoy-config", "--config", str(CONFIG)],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    (tmp_path / "envoy.yaml").write_bytes(bootstrap)
    validated = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(tmp_path / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validated.returncode == 0, validated.stderr + validated.stdout
