"""The built-in demo config of ``aigateway up``: models on the embedded mock backend, one
backend per schema, so the gateway runs offline with no keys."""

from __future__ import annotations

from typing import Any


def demo_config(mock_url: str) -> dict[str, Any]:
    """Every schema the gateway speaks, each served by the mock at ``mock_url``."""
    return {
        "backends": [
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
        ],
        "models": [
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
            {"name": "text-embedding-3-small", "backend": "mock-openai"},
        ],
    }
