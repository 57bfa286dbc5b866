"""``/v1/embeddings`` and ``/v1/models`` through Envoy with the official client."""

from __future__ import annotations

import openai
import pytest

from tests.e2e.stack import VERTEX_GEMINI_MODEL, Stack, wait_until
from tests.e2e.test_metrics import delta, snapshot
from tests.e2e.test_schemas import VERTEX_PATH


@pytest.mark.parametrize(
    ("model", "backend", "path"),
    [
        ("text-embedding-3-small", "mock-openai", "/v1/embeddings"),
        (
            "azure-embedding",
            "mock-azure",
            "/openai/deployments/embed-deploy/embeddings?api-version=2024-10-21",
        ),
        # Vertex AI's :predict, which reports each input's token count
        (
            "vertex-gemini",
            "mock-vertex",
            f"{VERTEX_PATH}/google/models/{VERTEX_GEMINI_MODEL}:predict",
        ),
    ],
)
def test_embeddings(
    stack: Stack, client: openai.OpenAI, model: str, backend: str, path: str
) -> None:
    stack.clear_mock_requests()
    before = snapshot(stack.metrics_text())
    result = client.embeddings.create(model=model, input=["one two three", "four five"])
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) > 0 for d in result.data)
    assert result.usage.prompt_tokens == 5
    assert result.usage.total_tokens == 5
    (seen,) = [r for r in stack.mock_requests() if r["method"] == "POST" and r["path"] != "/token"]
    assert seen["path"] == path
    after: dict = {}

    def recorded() -> bool:
        nonlocal after
        after = snapshot(stack.metrics_text())
        return bool(delta(before, after, "aigateway_requests_total", (backend, model)))

    wait_until("the embeddings request to be recorded", recorded)
    assert delta(before, after, "aigateway_requests_total", (backend, model)) == {
        (backend, model, "success"): 1
    }
    tokens = {
        k: v
        for k, v in delta(before, after, "aigateway_model_tokens_total", (backend, model)).items()
        if v
    }
    assert tokens == {(backend, model, "prompt"): 5, (backend, model, "total"): 5}


def test_embeddings_on_a_chat_only_schema_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="bedrock-claude", input="hello")
    assert err.value.code == "unsupported_endpoint"


def test_models_list_and_retrieve(stack: Stack, client: openai.OpenAI) -> None:
    import yaml

    config = yaml.safe_load(stack.config_path.read_text())
    listed = {m.id: m.owned_by for m in client.models.list()}
    assert listed == {m["name"]: m["backend"] for m in config["models"]}
    model = client.models.retrieve("bedrock-claude")
    assert (model.id, model.owned_by, model.object) == ("bedrock-claude", "mock-bedrock", "model")
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("nope")
    assert err.value.code == "model_not_found"
