"""The built-in demo config of ``aigateway up``: models on the embedded mock backend, one
backend per schema, so the gateway runs offline with no keys."""

from __future__ import annotations

from typing import Any

#: Vertex AI's demo project and region (the mock accepts any).
DEMO_PROJECT = "aigateway-demo"
DEMO_REGION = "us-central1"
#: The mock backend's request knobs, forwarded to it
#: (docs/architecture.md, "Headers a backend receives").
MOCK_KNOBS = "x-mock-*"
#: The demo model with a fallback backend.
FALLBACK_MODEL = "gpt-4o"


def demo_config(mock_url: str, vertex_key_file: str | None = None) -> dict[str, Any]:
    """Every schema the gateway speaks, each served by the mock at ``mock_url``.
    Vertex AI is in it when ``vertex_key_file`` names a service-account key whose
    tokens the mock issues (``up`` makes a throwaway one)."""
    backends: list[dict[str, Any]] = [
        {"name": "mock-openai", "schema": "openai", "endpoint": mock_url},
        {
            "name": "mock-azure",
            "schema": "azure-openai",
            "endpoint": mock_url,
            "api_version": "2024-10-21",
        },
        {
            "name": "mock-bedrock",
            "schema": "aws-bedrock",
            "endpoint": mock_url,
            # Demo credentials: requests are signed as for AWS (the mock accepts any).
            "auth": {
                "aws": {
                    "region": "us-east-1",
                    "access_key_id": {"value": "AKIDAIGATEWAYDEMO"},
                    "secret_access_key": {"value": "aigateway-demo-secret"},
                }
            },
        },
        {"name": "mock-anthropic", "schema": "anthropic", "endpoint": mock_url},
        {
            "name": "mock-gemini",
            "schema": "gcp-gemini",
            "endpoint": mock_url,
            # A demo key: Google's API wants one; the mock accepts any.
            "auth": {"api_key": {"value": "aigateway-demo-key"}},
        },
    ]
    models: list[dict[str, Any]] = [
        {"name": "gpt-4o-mini", "backend": "mock-openai"},
        {"name": "llama3", "backend": "mock-openai", "backend_model": "llama3:8b"},
        {"name": "azure-gpt-4o", "backend": "mock-azure", "backend_model": "gpt-4o"},
        {
            "name": "bedrock-claude",
            "backend": "mock-bedrock",
            "backend_model": "anthropic.claude-3-5-sonnet-20240620-v1:0",
        },
        {
            "name": "claude-sonnet",
            "backend": "mock-anthropic",
            "backend_model": "claude-3-5-sonnet-latest",
        },
        {"name": "gemini-flash", "backend": "mock-gemini", "backend_model": "gemini-2.0-flash"},
        {
            # Fallback: OpenAI first, Anthropic when it fails (the banner shows how).
            "name": FALLBACK_MODEL,
            "backends": [
                {"backend": "mock-openai", "backend_model": "gpt-4o"},
                {
                    "backend": "mock-anthropic",
                    "backend_model": "claude-3-5-sonnet-latest",
                    "priority": 1,
                },
            ],
            "retry": {"attempts": 2, "on": ["connect-failure", "reset", "5xx", "429"]},
        },
        {"name": "text-embedding-3-small", "backend": "mock-openai"},
        {
            "name": "gemini-embedding",
            "backend": "mock-gemini",
            "backend_model": "text-embedding-004",
        },
    ]
    if vertex_key_file is not None:
        backends.append(
            {
                "name": "mock-vertex",
                "schema": "gcp-vertex-ai",
                "endpoint": mock_url,
                "project": DEMO_PROJECT,
                "region": DEMO_REGION,
                "auth": {"gcp": {"service_account_file": vertex_key_file}},
            }
        )
        models += [
            {
                "name": "vertex-gemini",
                "backend": "mock-vertex",
                "backend_model": "gemini-2.0-flash-001",
            },
            {
                "name": "vertex-claude",
                "backend": "mock-vertex",
                "backend_model": "claude-3-5-sonnet-v2@20241022",
            },
        ]
    for backend in backends:
        # The mock's per-request knobs (x-mock-delay-ms, x-mock-fault...) reach it.
        backend["forward_headers"] = [MOCK_KNOBS]
    return {"backends": backends, "models": models}
