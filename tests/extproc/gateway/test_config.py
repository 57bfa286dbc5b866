"""Config validation: every bad file says where and why, in one readable message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

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


# --- Google backends ---------------------------------------------------------------

GOOGLE = """
backends:
  - name: gemini
    schema: gcp-gemini
    endpoint: https://generativelanguage.googleapis.com
    auth: {api_key: {value: gk-test}}
  - name: vertex
    schema: gcp-vertex-ai
    endpoint: https://us-central1-aiplatform.googleapis.com
    project: my-project
    region: us-central1
    auth: {gcp: {service_account_file: sa.json}}
models:
  - {name: flash, backend: gemini, backend_model: gemini-2.5-flash}
  - {name: vertex-flash, backend: vertex, backend_model: gemini-2.0-flash-001}
  - {name: vertex-claude, backend: vertex, backend_model: claude-3-5-sonnet-v2@20241022}
  - {name: embed, backend: gemini, backend_model: text-embedding-004}
"""


@pytest.fixture(scope="module")
def sa_key() -> str:
    from aigateway.mock_backend import new_service_account_key

    return new_service_account_key("https://oauth2.example/token")[0]


def test_google_backends_load_and_route(tmp_path: Path, sa_key: str) -> None:
    from aigateway.extproc.gateway.backends import RoutingTable
    from aigateway.translators import AnthropicMessagesTranslator, GeminiChatTranslator

    (tmp_path / "sa.json").write_text(sa_key)
    path = write(tmp_path, GOOGLE)
    config = load_config(path)
    vertex = config.backend("vertex")
    assert (vertex.project, vertex.region) == ("my-project", "us-central1")
    secrets = load_secrets(config, path)
    assert json.loads(secrets.gcp["vertex"].reveal())["type"] == "service_account"
    assert "PRIVATE KEY" not in repr(secrets.gcp)
    table = RoutingTable(config, secrets)
    assert table.credential_notes() == [
        "backend gemini: an API key in x-goog-api-key",
        "backend vertex: OAuth2 access tokens from service account"
        " aigateway-mock@aigateway-mock.iam.gserviceaccount.com (auth.gcp)",
    ]
    payload = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    routes = {name: table.routes[name] for name in ("flash", "vertex-flash", "vertex-claude")}
    paths = {
        name: route.translator("chat_completions").request(payload, b"").path
        for name, route in routes.items()
    }
    assert paths == {
        "flash": "/v1beta/models/gemini-2.5-flash:generateContent",
        "vertex-flash": "/v1/projects/my-project/locations/us-central1/publishers/google/models/"
        "gemini-2.0-flash-001:generateContent",
        "vertex-claude": "/v1/projects/my-project/locations/us-central1/publishers/anthropic/"
        "models/claude-3-5-sonnet-v2@20241022:rawPredict",
    }
    assert isinstance(routes["vertex-flash"].translator("chat_completions"), GeminiChatTranslator)
    assert isinstance(
        routes["vertex-claude"].translator("chat_completions"), AnthropicMessagesTranslator
    )
    assert table.routes["embed"].translators.supports("embeddings")
    assert routes["vertex-flash"].translators.supports("embeddings")
    assert not routes["vertex-claude"].translators.supports("embeddings")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("    project: my-project\n", ""),
            "backends[1]: gcp-vertex-ai backends need project and region",
        ),
        (
            ("    region: us-central1\n", "    region: US Central\n"),
            "backends[1].region: String should match pattern",
        ),
        (
            ("    project: my-project\n", "    project: my/project\n"),
            "backends[1].project: String should match pattern",
        ),
        (
            (
                "    auth: {api_key: {value: gk-test}}",
                "    auth: {api_key: {value: gk-test}}\n    region: us-east1",
            ),
            "backends[0]: project and region are only for gcp-vertex-ai backends",
        ),
        (
            (
                "    auth: {api_key: {value: gk-test}}",
                "    auth: {gcp: {service_account_file: sa.json}}",
            ),
            "backends[0]: auth.gcp is only for gcp-vertex-ai backends",
        ),
        (
            ("    auth: {gcp: {service_account_file: sa.json}}", "    auth: {api_key: {value: k}}"),
            "backends[1]: gcp-vertex-ai backends use OAuth2 tokens",
        ),
        (
            (
                "{gcp: {service_account_file: sa.json}}",
                "{gcp: {service_account_file: sa.json}, api_key: {value: k}}",
            ),
            "backends[1].auth: give exactly one of api_key, aws or gcp",
        ),
        (
            ("{gcp: {service_account_file: sa.json}}", "{gcp: {}}"),
            "backends[1].auth.gcp.service_account_file: Field required",
        ),
    ],
)
def test_bad_google_config_names_the_key_path(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in GOOGLE
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOGLE.replace(old, new, 1)))
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("{name: flash, backend: gemini, backend_model: ../v1/files}", "models[0].backend_model"),
        ("{name: flash, backend: gemini, backend_model: models/..}", "models[0].backend_model"),
        ("{name: flash, backend: gemini, backend_model: 'a?key=x'}", "models[0].backend_model"),
        ("{name: flash, backend: gemini, backend_model: 'a#b'}", "models[0].backend_model"),
        ("{name: flash, backend: gemini, backend_model: '%2e%2e'}", "models[0].backend_model"),
        ("{name: flash, backend: gemini, backend_model: models/a/b}", "models[0].backend_model"),
        ("{name: vertex-flash, backend: vertex, backend_model: ..}", "models[1].backend_model"),
        ("{name: vertex-flash, backend: vertex, backend_model: a/b}", "models[1].backend_model"),
        ("{name: vertex-flash, backend: vertex, backend_model: 'a:b'}", "models[1].backend_model"),
        ("{name: '../x', backend: vertex}", "models[1].name"),
    ],
)
def test_a_google_model_name_with_path_tricks_is_refused(
    tmp_path: Path, model: str, key: str
) -> None:
    index = int(key[len("models[")])
    line = GOOGLE.splitlines()[GOOGLE.splitlines().index("models:") + 1 + index]
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOGLE.replace(line, "  - " + model, 1)))
    assert f"{key}: " in str(err.value)
    assert "is not a gcp-" in str(err.value)


def test_google_model_names_of_every_documented_form_load(tmp_path: Path) -> None:
    models = (
        "models:\n"
        "  - {name: a, backend: gemini, backend_model: tunedModels/my-model-7}\n"
        "  - {name: b, backend: gemini, backend_model: models/gemini-2.5-flash}\n"
        "  - {name: c, backend: vertex, backend_model: claude-3-5-sonnet-v2@20241022}\n"
        "  - {name: gemini-1.5-pro_001, backend: vertex}\n"
    )
    text = GOOGLE.split("models:\n")[0] + models
    assert [m.name for m in load_config(write(tmp_path, text)).models] == [
        "a",
        "b",
        "c",
        "gemini-1.5-pro_001",
    ]


def test_an_unreadable_or_unusable_key_file_names_its_key(tmp_path: Path) -> None:
    from aigateway.extproc.gateway.backends import RoutingTable

    path = write(tmp_path, GOOGLE)
    config = load_config(path)
    with pytest.raises(ConfigError) as err:
        load_secrets(config, path)
    assert "backends[1].auth.gcp.service_account_file: cannot read secret file" in str(err.value)
    (tmp_path / "sa.json").write_text('{"type": "authorized_user"}')
    with pytest.raises(ConfigError) as err:
        RoutingTable(config, load_secrets(config, path))
    assert str(err.value) == (
        "backends[1].auth.gcp.service_account_file: not a service-account key file"
        ' ("type": "service_account")'
    )


def isolated_adc_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), NO_GCE_CHECK="true")
    return env


def check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aigateway", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_vertex_without_auth_uses_adc_and_says_so(tmp_path: Path, sa_key: str) -> None:
    no_auth = GOOGLE.replace("    auth: {gcp: {service_account_file: sa.json}}\n", "")
    path = write(tmp_path, no_auth)
    env = isolated_adc_env(tmp_path)
    refused = check_config(path, env)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith(
        "aigateway: invalid config: backends[1].auth (not set): no Google Application"
        " Default Credentials found"
    )
    (tmp_path / "adc.json").write_text(sa_key)
    found = check_config(
        path, {**env, "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "adc.json")}
    )
    assert found.returncode == 0, found.stderr
    assert (
        "backend vertex: OAuth2 access tokens from Google Application Default Credentials"
        " (found: service account aigateway-mock@aigateway-mock.iam.gserviceaccount.com)"
    ) in found.stdout
    assert found.stderr == ""


# -- metrics options and prices (docs/metrics.md, "Metrics and accounting") -------------

METRICS = {
    "backends": [{"name": "b", "schema": "anthropic", "endpoint": "http://127.0.0.1:1"}],
    "models": [
        {
            "name": "m",
            "backend": "b",
            "price": {"input": 3, "output": 15, "cached_input": 0.3, "cache_write": 3.75},
        }
    ],
    "metrics": {
        "schema": "both",
        "labels_from_headers": [
            {"header": "X-Tenant-Id", "label": "tenant", "values": ["acme", "globex"]}
        ],
    },
}


def test_metrics_options_and_prices_load() -> None:
    config = parse_config(METRICS)
    assert config.metrics.schema_ == "both"
    (label,) = config.metrics.labels_from_headers
    assert (label.header, label.label, label.values) == (
        "x-tenant-id",
        "tenant",
        ["acme", "globex"],
    )
    price = config.models[0].price
    assert price is not None
    assert (price.input, price.output, price.cached_input, price.cache_write) == (3, 15, 0.3, 3.75)
    assert config.backends[0].genai_provider == "anthropic"


def test_metrics_defaults() -> None:
    config = parse_config({k: v for k, v in METRICS.items() if k != "metrics"})
    assert (config.metrics.schema_, config.metrics.labels_from_headers) == ("aigateway", [])


def _with(path: str, value: object) -> dict[str, object]:
    doc = json.loads(json.dumps(METRICS))
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[last] = value
    return doc


TENANT = {"header": "x-tenant-id", "label": "tenant", "values": ["acme"]}


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "metrics.schema",
            "otel",
            "metrics.schema: Input should be 'aigateway', 'genai' or 'both'",
        ),
        (
            "metrics.labels_from_headers",
            [{**TENANT, "header": "authorization"}],
            "metrics.labels_from_headers[0].header: authorization carries credentials",
        ),
        (
            "metrics.labels_from_headers",
            [{**TENANT, "label": "model"}],
            "metrics.labels_from_headers[0].label: 'model' is a label the metrics already have",
        ),
        (
            "metrics.labels_from_headers",
            [{**TENANT, "label": "gen_ai_tenant"}],
            "metrics.labels_from_headers[0].label: 'gen_ai_tenant' is a label",
        ),
        (
            "metrics.labels_from_headers",
            [{**TENANT, "label": "Tenant"}],
            "metrics.labels_from_headers[0].label: String should match pattern",
        ),
        (
            "metrics.labels_from_headers",
            [{**TENANT, "values": ["acme", "other"]}],
            "metrics.labels_from_headers[0].values: 'other' is what the label says",
        ),
        (
            "metrics.labels_from_headers",
            [{**TENANT, "values": ["acme", "acme"]}],
            "metrics.labels_from_headers[0].values: values must be distinct",
        ),
        (
            "metrics.labels_from_headers",
            [{**TENANT, "values": []}],
            "metrics.labels_from_headers[0].values: List should have at least 1 item",
        ),
        (
            "metrics.labels_from_headers",
            [TENANT, {**TENANT, "header": "x-team"}],
            "metrics: labels_from_headers: each label must have its own name",
        ),
        (
            "metrics.labels_from_headers",
            [TENANT, {**TENANT, "label": "team"}],
            "metrics: labels_from_headers: each header may give one label",
        ),
        (
            "metrics.labels_from_headers",
            [
                {"header": f"x-{n}", "label": n, "values": [str(i) for i in range(98)]}
                for n in ("a", "b", "c")
            ],
            "metrics: labels_from_headers: 1000000 combinations of values",
        ),
        (
            "metrics.labels_from_headers",
            [{**TENANT, "header": "x-ai-gateway-model"}],
            "metrics.labels_from_headers[0].header: x-ai-gateway-model is a routing header",
        ),
        (
            "models.0.price.input",
            -1,
            "models[0].price.input: Input should be greater than or equal to 0",
        ),
        ("models.0.price", {"input": 1}, "models[0].price.output: Field required"),
        ("models.0.price.output", "nan", "models[0].price.output: Input should be a finite number"),
        ("metrics.colour", "blue", "metrics.colour: Extra inputs are not permitted"),
    ],
)
def test_bad_metrics_options_name_the_key_path(path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with(path, value), "c.yaml")
    assert str(err.value).startswith("c.yaml: ")
    assert message in str(err.value), str(err.value)


# -- limits (docs/limits.md) ----------------------------------

LIMITS = {
    **{k: v for k, v in METRICS.items() if k != "metrics"},
    "models": [
        *METRICS["models"],  # type: ignore[list-item]
        {"name": "free", "backend": "b", "max_output_tokens": 256},
    ],
    "limits": {
        "store": "redis://127.0.0.1:6379/2",
        "on_store_error": "deny",
        "rules": [
            {
                "name": "tenant-tokens",
                "key": {"header": "X-Tenant-Id"},
                "tokens": {"limit": 100000, "per": "hour"},
            },
            {"name": "dollars", "models": ["m"], "usd": {"limit": 50, "per": "day"}},
            {"name": "rpm", "requests": {"limit": 600, "per": "minute"}},
        ],
    },
}


def test_limits_load() -> None:
    config = parse_config(LIMITS)
    limits = config.limits
    assert (limits.store, limits.on_store_error) == ("redis://127.0.0.1:6379/2", "deny")
    assert [r.describe() for r in limits.rules] == [
        "tenant-tokens: 100000 tokens per hour, per x-tenant-id, every model",
        "dollars: $50 per day, shared, m",
        "rpm: 600 requests per minute, shared, every model",
    ]
    assert [r.window_seconds for r in limits.rules] == [3600, 86400, 60]
    assert config.models[1].max_output_tokens == 256
    assert parse_config(METRICS).limits.rules == []
    assert parse_config(METRICS).limits.store == "memory"


def _limits_with(path: str, value: object) -> dict[str, object]:
    doc = json.loads(json.dumps(LIMITS))
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("limits.store", "memcached://x", "limits.store: must be memory, redis://HOST:PORT/DB or"),
        ("limits.store", "redis://:pw@h:1/0", "limits.store: must not carry credentials (give"),
        ("limits.store", "rediss://u:pw@h:1/0", "limits.store: must not carry credentials (give"),
        ("limits.store", "redis://h:1/0?password=x", "limits.store: must not carry a query"),
        ("limits.redis", {"username": "u"}, "limits.redis: username needs a password"),
        ("limits.redis", {"ca_file": "ca.pem"}, "limits.redis: ca_file is only for a rediss://"),
        ("limits.redis", {"password": {"env": "X"}, "pass": 1}, "limits.redis.pass: Extra input"),
        ("limits.redis", {"password": {"env": "X", "file": "y"}}, "limits.redis.password: give"),
        ("limits.store", "redis://h:1/x", "limits.store: the path of redis://HOST:PORT/DB must"),
        ("limits.on_store_error", "maybe", "limits.on_store_error: Input should be 'allow' or"),
        ("limits.rules.0.name", "Tenant", "limits.rules[0].name: String should match pattern"),
        ("limits.rules.1.name", "tenant-tokens", "limits.rules[1].name: duplicate rule name"),
        ("limits.rules.0.key.header", "authorization", "limits.rules[0].key.header: authoriz"),
        ("limits.rules.0.key.header", "x-ai-gateway-model", "is a routing header"),
        ("limits.rules.0.models", ["nope"], "limits.rules[0].models: no model named 'nope'"),
        (
            "limits.rules.0.usd",
            {"limit": 1, "per": "day"},
            "limits.rules[0]: give exactly one of tokens, usd or requests",
        ),
        ("limits.rules.0.tokens", None, "limits.rules[0]: give exactly one of"),
        ("limits.rules.0.tokens.per", "week", "limits.rules[0].tokens.per: Input should be"),
        ("limits.rules.0.tokens.limit", 0, "limits.rules[0].tokens.limit: Input should be gre"),
        ("limits.rules.1.models", None, "limits.rules[1].usd: models without a price: free"),
        ("models.1.max_output_tokens", 0, "models[1].max_output_tokens: Input should be greater"),
    ],
)
def test_bad_limits_name_the_key_path(path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_limits_with(path, value), "c.yaml")
    assert str(err.value).startswith("c.yaml: ")
    assert message in str(err.value), str(err.value)


def test_a_redis_store_not_in_redis_refuses_a_login() -> None:
    doc = _limits_with("limits.redis", {"password": {"env": "X"}})
    doc["limits"]["store"] = "memory"  # type: ignore[index]
    with pytest.raises(ConfigError) as err:
        parse_config(doc, "c.yaml")
    assert str(err.value) == "c.yaml: limits.redis: only for a redis:// or rediss:// store"


def test_the_redis_login_is_read_at_start_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    doc = _limits_with("limits.store", "rediss://redis.internal:6380/0")
    login = {"username": "aigateway", "password": {"env": "TEST_REDIS_PASS"}, "ca_file": "ca.pem"}
    doc["limits"]["redis"] = login  # type: ignore[index]
    path = write(tmp_path, json.dumps(doc))
    config = load_config(path)
    with pytest.raises(ConfigError) as err:
        load_secrets(config, path)
    assert str(err.value) == (
        f"{path}: limits.redis.password: environment variable TEST_REDIS_PASS is not set"
    )
    monkeypatch.setenv("TEST_REDIS_PASS", "hunter2-redis")
    redis = load_secrets(config, path).redis
    assert (redis.username, redis.password) == ("aigateway", Secret("hunter2-redis"))
    assert redis.ca_pem == ca.cert_pem.bytes().decode()
    assert "hunter2" not in repr(redis) + repr(config)
    checked = subprocess.run(
        [sys.executable, "-m", "aigateway", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "  limits in rediss://redis.internal:6380/0 as user aigateway (" in checked.stdout
    assert "hunter2" not in checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("ca_text", "message"),
    [(None, "cannot read "), ("not a certificate", "holds no PEM certificate")],
)
def test_a_bad_redis_ca_file_is_refused_at_start(
    tmp_path: Path, ca_text: str | None, message: str
) -> None:
    if ca_text is not None:
        (tmp_path / "ca.pem").write_text(ca_text)
    doc = _limits_with("limits.store", "rediss://redis.internal:6380/0")
    doc["limits"]["redis"] = {"ca_file": "ca.pem"}  # type: ignore[index]
    path = write(tmp_path, json.dumps(doc))
    with pytest.raises(ConfigError) as err:
        load_secrets(load_config(path), path)
    assert str(err.value).startswith(f"{path}: limits.redis.ca_file: "), str(err.value)
    assert message in str(err.value)


def test_check_config_prints_the_limits(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(LIMITS))
    checked = subprocess.run(
        [sys.executable, "-m", "aigateway", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert (
        "  limits in redis://127.0.0.1:6379/2 (on store error: deny):\n"
        "    tenant-tokens: 100000 tokens per hour, per x-tenant-id, every model\n"
        "    dollars: $50 per day, shared, m\n"
        "    rpm: 600 requests per minute, shared, every model\n"
    ) in checked.stdout
