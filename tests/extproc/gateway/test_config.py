"""Config validation: every bad file says where and why, in one readable message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aigateway.extproc.gateway.config import (
    ConfigError,
    Secret,
    load_config,
    load_secrets,
    parse_config,
)

GOOD = """
backends:
  - name: local-openai
    schema: openai
    endpoint: http://127.0.0.1:8000/
    auth:
      api_key: {env: TEST_AIGW_KEY}
  - name: bedrock
    schema: aws-bedrock
    endpoint: https://bedrock-runtime.us-east-1.amazonaws.com
    auth:
      aws:
        region: us-east-1
        access_key_id: {value: AKIDEXAMPLE}
        secret_access_key: {file: secret.txt}
models:
  - name: phi4
    backend: local-openai
    backend_model: phi4:latest
  - name: claude
    backend: bedrock
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_good_config_loads_and_resolves_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_AIGW_KEY", "sk-test")
    (tmp_path / "secret.txt").write_text("wJalrXUtnFEMI\n")
    config = load_config(write(tmp_path, GOOD))
    backend = config.backend("local-openai")
    assert backend.endpoint == "http://127.0.0.1:8000"
    assert (backend.authority, backend.port, backend.tls) == ("127.0.0.1:8000", 8000, False)
    assert config.backend("bedrock").authority == "bedrock-runtime.us-east-1.amazonaws.com"
    assert config.models[0].upstream_name == "phi4:latest"
    secrets = load_secrets(config, tmp_path / "config.yaml")
    assert secrets.api_keys["local-openai"] == Secret("sk-test")
    aws = secrets.aws["bedrock"]
    assert aws is not None and aws[1].reveal() == "wJalrXUtnFEMI"
    # Secrets never print.
    assert "sk-test" not in repr(secrets.api_keys) and "sk-test" not in str(secrets.api_keys)
    assert "AKIDEXAMPLE" not in repr(config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("name: local-openai", "name: Local_OpenAI"),
            "backends[0].name: String should match pattern",
        ),
        (("schema: openai", "schema: gemini"), "backends[0].schema: Input should be"),
        (("http://127.0.0.1:8000/", "ftp://x"), "backends[0].endpoint: must be http(s)://host"),
        (("http://127.0.0.1:8000/", "http://h:99999"), "backends[0].endpoint: has a bad port"),
        (
            ("api_key: {env: TEST_AIGW_KEY}", "api_key: {env: A, value: b}"),
            "backends[0].auth.api_key: give exactly one of env, file or value",
        ),
        (("backend: bedrock", "backend: nope"), "models[1].backend: no backend named 'nope'"),
        (("- name: claude", "- name: phi4"), "models[1].name: duplicate model name 'phi4'"),
        (
            ("    backend_model: phi4:latest", "    colour: blue"),
            "models[0].colour: Extra inputs are not permitted",
        ),
        (("        region: us-east-1\n", ""), "backends[1].auth.aws.region: Field required"),
    ],
)
def test_bad_config_names_the_key_path(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD.replace(old, new, 1)))
    assert str(err.value).startswith(str(tmp_path / "config.yaml") + ": ")
    assert message in str(err.value)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+, column \d+: expected"):
        load_config(write(tmp_path, "backends:\n  - name: [unclosed\n"))


@pytest.mark.parametrize("text", ["", "- a list\n", "just text\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, text))


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/config.yaml")


def test_missing_secret_names_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_AIGW_KEY", raising=False)
    path = write(tmp_path, GOOD)
    config = load_config(path)
    with pytest.raises(ConfigError) as err:
        load_secrets(config, path)
    text = str(err.value)
    assert "backends[0].auth: environment variable TEST_AIGW_KEY is not set" in text
    assert "backends[1].auth: cannot read secret file" in text


def test_schema_specific_rules() -> None:
    with pytest.raises(ConfigError, match="need api_version"):
        parse_config(
            {
                "backends": [{"name": "az", "schema": "azure-openai", "endpoint": "https://x"}],
                "models": [{"name": "m", "backend": "az"}],
            }
        )


def test_cli_reports_bad_config_in_one_line_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("schema: openai", "schema: gemini"))
    proc = subprocess.run(
        [sys.executable, "-m", "aigateway", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("aigateway: invalid config: ")
    assert "backends[0].schema" in proc.stderr
