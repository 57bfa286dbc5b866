from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.stack import Stack, running


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One mock backend + aigateway serve + envoy for the whole session."""
    with running(Stack(tmp_path_factory.mktemp("stack"))) as s:
        yield s


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="client-own-key", max_retries=0)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
