"""The built-in demo config of ``aigateway up``: models on the embedded mock backend, one
backend per schema, so the gateway runs offline with no keys."""

from __future__ import annotations

from typing import Any


def demo_config(mock_url: str) -> dict[str, Any]:
    return {
        "backends": [
            {"name": "mock-openai", "schema": "openai", "endpoint": mock_url},
        ],
        "models": [
            {"name": "gpt-4o-mini", "backend": "mock-openai"},
            {"name": "llama3", "backend": "mock-openai", "backend_model": "llama3:8b"},
        ],
    }
