"""The paired benchmark's report (benchmarks/paired.py): ratios per round, medians, and
``n/a`` for a scenario the baseline cannot serve."""

from __future__ import annotations

from benchmarks.paired import SCENARIOS, Round, markdown, summarize


def _round(rps: float, p50: float, cpu: float) -> Round:
    return Round(
        requests=int(rps * 5),
        rps=rps,
        p50_ms=p50,
        p99_ms=p50 * 3,
        errors=0,
        cpu_us_per_request=cpu,
        cpu_us_per_chunk=None,
        envoy_cpu_us_per_request=500.0,
        extproc_messages_per_request=4.0,
    )


def test_ratios_are_medians_of_each_rounds_ratio_and_missing_scenarios_are_na() -> None:
    scenarios = [SCENARIOS["chat-c16"], SCENARIOS["messages-gemini"]]
    rounds = {
        "base": {"chat-c16": [_round(100, 10, 1000), _round(200, 5, 1000), _round(50, 20, 800)]},
        "landed": {
            "chat-c16": [_round(110, 9, 900), _round(100, 6, 1100), _round(60, 18, 800)],
            "messages-gemini": [_round(80, 30, 5000)] * 3,
        },
    }
    summary = summarize(scenarios, rounds)
    chat = summary["chat-c16"]
    assert chat["ratio_rounds"] == [1.1, 0.5, 1.2]
    assert chat["ratio"] == 1.1  # the median round, not the ratio of medians (100/100)
    assert chat["p50_diff_ms"] == -1.0
    assert chat["cpu_ratio"] == 1.0
    assert chat["cpu_us_per_request"] == [1000.0, 900.0]
    assert summary["messages-gemini"] == {"ratio": "n/a", "p50_diff_ms": "n/a"}
    doc = {
        "base": "bac2f13 (bac2f132dd13)",
        "landed": "abc",
        "settings": {"rounds": 3, "duration_s": 5, "warmup_s": 1, "load_average": [1, 1, 1]},
        "summary": summary,
        "rounds": {
            side: {
                name: [{k: getattr(r, k) for k in Round.__slots__} for r in rs]
                for name, rs in by.items()
            }
            for side, by in rounds.items()
        },
    }
    text = markdown(doc)
    assert "| chat-c16 | **1.100** | -1.000 | 1.0 |" in text
    assert "| messages-gemini | n/a | n/a |" in text
    assert (
        "| chat-c16 | 2 | 200, 5.00, 1000, 500, 4.0, 0 | 100, 6.00, 1100, 500, 4.0, 0 | 0.500 |"
        in text
    )
