"""The instruction count's workload (benchmarks/instructions.py) still runs against this
tree: a request and a stream go through the instrumented servicer unrefused, and the
do-nothing servicer answers the same messages (callgrind itself is not run here)."""

from __future__ import annotations

import pytest

from benchmarks.instructions import workload


@pytest.mark.parametrize("variant", ["instrumented", "bare", "null"])
def test_the_workload_goes_through_every_variant(variant: str) -> None:
    run, request, stream = workload(variant)
    run(request, 2)  # raises SystemExit on an immediate response
    run(stream, 1)
    assert len(stream) == 3 + 69  # headers, body, response headers; 69 chunk messages
