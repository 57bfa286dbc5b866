"""Every backend's answer streams, cut anywhere: the client gets the same bytes, usage
and errors as from the uncut stream (one table: each backend's test module has its
``STREAMS`` and ``run_split``)."""

from __future__ import annotations

from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.translators.backends import test_anthropic, test_bedrock, test_gemini

BACKENDS: dict[str, ModuleType] = {
    "anthropic": test_anthropic,
    "bedrock": test_bedrock,
    "gemini": test_gemini,
}
CASES = sorted((backend, name) for backend, m in BACKENDS.items() for name in m.STREAMS)


@settings(max_examples=450, deadline=None)
@given(
    case=st.sampled_from(CASES),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=30),
    include_usage=st.booleans(),
)
def test_any_split_of_a_stream_gives_the_same_output(
    case: tuple[str, str], cuts: list[int], include_usage: bool
) -> None:
    backend, name = case
    module = BACKENDS[backend]
    data = module.STREAMS[name]
    whole = module.run_split(data, [], include_usage)
    assert module.run_split(data, cuts, include_usage) == whole
