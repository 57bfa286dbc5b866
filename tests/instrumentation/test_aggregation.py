"""Counters and histograms aggregated in process export exactly what the SDK's own
instruments would: the same Prometheus text, through the same readers."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

from aigateway.instrumentation.aggregation import (
    HistogramTotals,
    InProcessHistograms,
    PendingObservations,
    ProducingInMemoryMetricReader,
)
from aigateway.instrumentation.metrics import (
    METER_NAME,
    create_meter_provider,
    prometheus_reader,
)

BOUNDS = (0.1, 1.0, 10.0)
VALUES = [0.05, 0.1, 0.5, 1.0, 3.0, 10.0, 11.0, 0.0]
SERIES = [("a", "x"), ("b", "y")]


def test_a_histogram_exports_the_same_text_as_the_sdks() -> None:
    sdk_registry = CollectorRegistry()
    plain = PrometheusMetricReader(
        disable_target_info=True, scope_info_enabled=False, registry=sdk_registry
    )
    sdk_provider = MeterProvider(metric_readers=[plain])
    sdk = sdk_provider.get_meter(METER_NAME).create_histogram(
        "h_seconds", description="help", explicit_bucket_boundaries_advisory=BOUNDS
    )
    histograms = InProcessHistograms()
    registry = CollectorRegistry()
    provider = create_meter_provider(
        [prometheus_reader(registry, histograms)], histograms, cardinality=100
    )
    ours = histograms.add(
        HistogramTotals("h_seconds", labels=("k", "l"), bounds=BOUNDS, description="help")
    )
    for i, value in enumerate(VALUES):
        k, v = SERIES[i % 2]
        sdk.record(value, {"k": k, "l": v})
        ours.record(value, (k, v))
    expected = generate_latest(sdk_registry).decode()
    assert "h_seconds_bucket" in expected
    assert generate_latest(registry).decode() == expected
    sdk_provider.shutdown()
    provider.shutdown()


def data_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {
        m.name: list(m.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }


def in_memory() -> tuple[InProcessHistograms, ProducingInMemoryMetricReader, MeterProvider]:
    histograms = InProcessHistograms()
    reader = ProducingInMemoryMetricReader(histograms)
    return histograms, reader, create_meter_provider([reader], histograms, cardinality=100)


def test_buckets_hold_values_up_to_their_bound_with_sum_min_and_max() -> None:
    histograms, reader, _ = in_memory()
    h = histograms.add(HistogramTotals("h", labels=("k",), bounds=BOUNDS, description=""))
    for value in VALUES:
        h.record(value, ("a",))
    (point,) = data_points(reader)["h"]
    assert list(point.bucket_counts) == [3, 2, 2, 1]  # (..0.1] (0.1..1] (1..10] (10..)
    assert (point.count, point.sum, point.min, point.max) == (8, sum(VALUES), 0.0, 11.0)
    assert list(point.explicit_bounds) == list(BOUNDS)
    assert point.attributes == {"k": "a"}


def test_a_none_label_value_leaves_the_attribute_out() -> None:
    histograms, reader, _ = in_memory()
    h = histograms.add(HistogramTotals("h", labels=("k", "l"), bounds=BOUNDS, description=""))
    h.record(1, ("a", None))
    assert [p.attributes for p in data_points(reader)["h"]] == [{"k": "a"}]


def test_past_the_limit_new_series_fold_into_one_overflow_series() -> None:
    histograms, reader, _ = in_memory()
    h = histograms.add(HistogramTotals("h", labels=("k",), bounds=BOUNDS, description="", limit=2))
    for name in ("a", "b", "c", "d", "a"):
        h.record(1, (name,))
    points = {tuple(sorted(p.attributes.items())): p.count for p in data_points(reader)["h"]}
    assert points == {(("k", "a"),): 2, (("k", "b"),): 1, (("otel.metric.overflow", True),): 2}


def test_nothing_is_exported_before_the_first_observation_and_the_slot_never() -> None:
    histograms, reader, provider = in_memory()
    counter = provider.get_meter(METER_NAME).create_counter("c")
    h = histograms.add(HistogramTotals("h", labels=(), bounds=BOUNDS, description=""))
    assert data_points(reader) == {}
    counter.add(1)
    assert set(data_points(reader)) == {"c"}
    h.record(1, ())
    assert set(data_points(reader)) == {"c", "h"}
    assert InProcessHistograms.SLOT not in data_points(reader)


def test_histograms_are_exported_without_any_sdk_instrument() -> None:
    # The SDK hands a reader nothing when it has no data of its own: the slot sees to it.
    histograms, reader, _ = in_memory()
    h = histograms.add(HistogramTotals("h", labels=(), bounds=BOUNDS, description=""))
    h.record(1, ())
    assert set(data_points(reader)) == {"h"}


def test_pending_observations_fold_to_what_recording_each_gives() -> None:
    # A stream's chunk gaps: appended, folded every FOLD_AT (bounded memory), recorded
    # under their labels at the end; the same buckets, sum, min and max as one by one.
    one_by_one = HistogramTotals("h", labels=("k",), bounds=BOUNDS, description="")
    at_once = HistogramTotals("h", labels=("k",), bounds=BOUNDS, description="")
    pending = PendingObservations(at_once)
    values = [VALUES[i % len(VALUES)] * (1 + i % 3) for i in range(600)]
    for value in values:
        one_by_one.record(value, ("a",))
        pending.values.append(value)
        if len(pending.values) == PendingObservations.FOLD_AT:
            pending.fold()
        assert len(pending.values) < PendingObservations.FOLD_AT
    assert pending.count == 600
    at_once.record_pending(pending, ("a",))
    at_once.record_pending(PendingObservations(at_once), ("b",))  # nothing: no series
    (expected,) = one_by_one.metric(0, 1).data.data_points  # type: ignore[union-attr]
    (point,) = at_once.metric(0, 1).data.data_points  # type: ignore[union-attr]
    assert list(point.bucket_counts) == list(expected.bucket_counts)
    assert (point.count, point.min, point.max) == (expected.count, expected.min, expected.max)
    assert point.sum == pytest.approx(expected.sum)
