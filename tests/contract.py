"""The metrics contract (docs/metrics.md, "Metrics and accounting";
docs/architecture.md, "Accounting rules") written out once for the tests, independently
of the code that implements it: names, types, labels, HELP texts and buckets."""

from __future__ import annotations

FAMILIES = {
    "aigateway_requests": (
        "counter",
        "Total number of requests processed",
        {"backend", "model", "status"},
    ),
    "aigateway_model_tokens": (
        "counter",
        "Total number of tokens processed by model and type",
        {"backend", "model", "type"},
    ),
    "aigateway_first_token_latency_seconds": (
        "histogram",
        "Time to receive first token in streaming responses",
        {"backend", "model"},
    ),
    "aigateway_inter_token_latency_seconds": (
        "histogram",
        "Time between consecutive tokens in streaming responses",
        {"backend", "model"},
    ),
    "aigateway_total_latency_seconds": (
        "histogram",
        "Time spent processing request",
        {"backend", "model", "status"},
    ),
}

# fmt: off
BUCKETS = {
    "aigateway_first_token_latency_seconds":
        [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60],
    "aigateway_inter_token_latency_seconds":
        [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5],
    "aigateway_total_latency_seconds":
        [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300],
}
# fmt: on
