"""The facts contract (``instrumentation/facts.py``): one list of keys, which Envoy's
access log prints in full and the gateway publishes under the one namespace."""

from __future__ import annotations

from typing import get_args

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.gateway.config import parse_config
from aigateway.extproc.ops.envoy_bootstrap import EnvoyOptions, build_bootstrap
from aigateway.instrumentation.facts import (
    FACT_KEYS,
    METADATA_NAMESPACE,
    FactKey,
    Facts,
    TokenFact,
    facts_in,
    published,
)


def test_the_key_literal_lists_every_fact_and_token_counts_are_facts() -> None:
    assert list(get_args(FactKey)) == list(FACT_KEYS)
    assert set(get_args(TokenFact)) <= set(FACT_KEYS)
    assert set(FACT_KEYS) == Facts.__optional_keys__


def test_the_access_log_prints_every_fact() -> None:
    config = parse_config(
        {
            "backends": [{"name": "b", "schema": "openai", "endpoint": "http://127.0.0.1:1"}],
            "models": [{"name": "m", "backend": "b"}],
        }
    )
    options = EnvoyOptions(
        listen=Address.parse("127.0.0.1:10000"),
        extproc=[Address.parse("127.0.0.1:1063")],
        admin=Address.parse("127.0.0.1:9901"),
    )
    bootstrap = build_bootstrap(config, options)
    (listener,) = bootstrap["static_resources"]["listeners"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (log,) = hcm["access_log"]
    line = log["typed_config"]["log_format"]["json_format"]
    for key in FACT_KEYS:
        assert line[key] == f"%DYNAMIC_METADATA({METADATA_NAMESPACE}:{key})%"


def test_published_facts_are_read_back() -> None:
    facts: Facts = {"backend": "b", "input_tokens": 3}
    assert facts_in(published(facts)) == facts
    assert facts_in(None) is None
    assert facts_in({"other": {"backend": "x"}}) is None
