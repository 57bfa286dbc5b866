"""The mock's deterministic vocabulary: how prompts are counted and what replies say.

Contract (docs/architecture.md, "Mock backend"): a prompt token is one
whitespace-separated word; a reply of ``n`` completion tokens is ``n`` words cycling
through :data:`VOCABULARY`, streamed one word per chunk. The first piece is the bare
word and every later piece carries its leading space, so the streamed pieces concatenate
to exactly the non-streamed text: ``"alpha" + " beta" + " gamma" == reply_text(3)``."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["VOCABULARY", "count_words", "limit_tokens", "reply_pieces", "reply_text"]

VOCABULARY: tuple[str, ...] = (
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
)


def count_words(text: str) -> int:
    """Number of whitespace-separated words in ``text`` (the mock's token count)."""
    return len(text.split())


@lru_cache(maxsize=256)
def reply_pieces(n: int) -> tuple[str, ...]:
    """The ``n`` stream pieces of a reply: ``("alpha", " beta", " gamma", ...)``."""
    size = len(VOCABULARY)
    return tuple(VOCABULARY[i % size] if i == 0 else " " + VOCABULARY[i % size] for i in range(n))


@lru_cache(maxsize=256)
def reply_text(n: int) -> str:
    """The whole ``n``-word reply, equal to ``"".join(reply_pieces(n))``."""
    return "".join(reply_pieces(n))


def limit_tokens(requested: int, limit: object) -> tuple[int, bool]:
    """Apply a request's output-token limit (``max_tokens`` and kin) to the knob's count.

    Returns ``(tokens, truncated)``; ``truncated`` means the provider's "length" /
    ``max_tokens`` stop reason. Limits that are not non-negative integers are ignored.
    """
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < requested:
        return limit, True
    return requested, False
