"""The request body bytes one processor holds at once (docs/reliability.md, "Known
limits"): a request that would take the total over the cap is refused with a 503 before
its body is parsed, so a burst of large bodies cannot exhaust memory or starve the rest."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class BodyBudget:
    """Bytes reserved by requests in flight, against ``limit``; one event loop, no lock."""

    limit: int
    held: int = 0

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes if they fit; ``False`` (nothing taken) when they do not.
        One request alone always fits (Envoy already caps it at ``max_request_bytes``)."""
        if self.held and self.held + size > self.limit:
            return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        self.held -= size
