"""Counters and histograms aggregated in process, exported through OpenTelemetry.

Why not the SDK's own ``Counter`` and ``Histogram``: each SDK measurement costs
~16-25 us on the machines we measure on (it cleans, copies, sorts and hashes the
attributes on every call, ``benchmarks/NOTES.md``), and a request with
``metrics.schema: both`` makes up to ten of them. Here a measurement is one dict lookup
and a few list updates under a lock (~1 us); the exported data is what the SDK would
export (cumulative sums, explicit-bucket histograms), through the SDK's readers:

- :class:`CounterTotals` are read by SDK observable counters at each collection;
- :class:`HistogramTotals` are handed to every reader by :class:`InProcessHistograms`,
  the equivalent of the OpenTelemetry specification's ``MetricProducer``, which the
  Python SDK does not have.

The locks are there because collection runs on the exporter's thread.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)

#: The attribute of the one series past a histogram's cardinality limit (as the SDK
#: names its own overflow series).
OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}

#: Label values of a series, in the order of the instrument's labels; ``None`` leaves
#: that attribute out (``gen_ai.response.model`` when the backend did not report one).
LabelValues = tuple[str | None, ...]


class CounterTotals:
    """Running totals of one counter by label values, reported to OpenTelemetry by an
    observable counter when metrics are collected (the exported data is the same
    cumulative sum per series as a ``Counter``'s)."""

    __slots__ = ("_lock", "_totals", "labels")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, ...], int] = {}

    def add(self, amount: int, values: tuple[str, ...]) -> None:
        """Add ``amount`` to the series with these label values (in ``labels`` order)."""
        with self._lock:
            self._totals[values] = self._totals.get(values, 0) + amount

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = list(self._totals.items())
        labels = self.labels
        return [
            Observation(total, dict(zip(labels, values, strict=True))) for values, total in items
        ]


class _Series:
    __slots__ = ("buckets", "max", "min", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")

    def merge(self, other: _Series) -> None:
        buckets = self.buckets
        for i, count in enumerate(other.buckets):
            buckets[i] += count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)


class PendingObservations:
    """Observations for one :class:`HistogramTotals` whose label values are not known
    yet (a stream's gaps between chunks, labelled when the request is recorded), added
    to the histogram in one step by :meth:`HistogramTotals.record_pending`.

    An observation is appended to ``values`` (a list append: the cheapest thing a
    streamed chunk can do); the owner calls :meth:`fold` when ``values`` holds
    :attr:`FOLD_AT` of them, which turns them into bucket counts, so memory stays
    bounded however long the stream."""

    FOLD_AT = 256

    __slots__ = ("_bounds", "_series", "values")

    def __init__(self, histogram: HistogramTotals) -> None:
        self._bounds = histogram.bounds
        self._series = _Series(len(self._bounds) + 1)
        #: Observations (>= 0) not yet folded into the bucket counts.
        self.values: list[float] = []

    @property
    def count(self) -> int:
        return len(self.values) + sum(self._series.buckets)

    def fold(self) -> None:
        """Turn ``values`` into bucket counts."""
        values = self.values
        if not values:
            return
        series, bounds = self._series, self._bounds
        buckets = series.buckets
        for value in values:
            buckets[bisect_left(bounds, value)] += 1
        series.sum += sum(values)
        series.min = min(series.min, *values)
        series.max = max(series.max, *values)
        values.clear()


class HistogramTotals:
    """One explicit-bucket histogram, aggregated in process by label values: bucket
    counts, sum, min and max per series, exported cumulative.

    Bucket ``i`` counts values in ``(bounds[i-1], bounds[i]]``, the last one values above
    every bound, as OpenTelemetry defines explicit buckets. Past ``limit`` series, new
    label values go to one overflow series, as the SDK's cardinality limit does.
    """

    __slots__ = ("_lock", "_series", "bounds", "description", "labels", "limit", "name", "unit")

    def __init__(
        self,
        name: str,
        *,
        labels: tuple[str, ...],
        bounds: Sequence[float],
        description: str,
        unit: str = "",
        limit: int = 2000,
    ) -> None:
        self.name = name
        self.labels = labels
        self.bounds = tuple(float(b) for b in bounds)
        self.description = description
        self.unit = unit
        self.limit = limit
        self._lock = threading.Lock()
        self._series: dict[LabelValues | None, _Series] = {}  # None: the overflow series

    def record(self, value: float, values: LabelValues) -> None:
        """One observation of ``value`` (>= 0) for the series with these label values."""
        with self._lock:
            series = self._series.get(values)
            if series is None:
                series = self._new_series(values)
            series.buckets[bisect_left(self.bounds, value)] += 1
            series.sum += value
            if value < series.min:
                series.min = value
            if value > series.max:
                series.max = value

    def record_pending(self, pending: PendingObservations, values: LabelValues) -> None:
        """``pending``'s observations (of this histogram) for the series with these
        label values."""
        pending.fold()
        if not pending.count:
            return
        with self._lock:
            series = self._series.get(values)
            if series is None:
                series = self._new_series(values)
            series.merge(pending._series)

    def _new_series(self, values: LabelValues) -> _Series:
        """The series for label values not seen yet: a new one, or past the limit the
        overflow series; under the lock."""
        key = values if len(self._series) < self.limit else None
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(len(self.bounds) + 1)
        return series

    def has_data(self) -> bool:
        return bool(self._series)

    def metric(self, start_time: int, now: int) -> Metric | None:
        """The histogram as the SDK's readers take it (``None`` before any observation)."""
        with self._lock:
            snapshot = [
                (values, list(s.buckets), s.sum, s.min, s.max) for values, s in self._series.items()
            ]
        if not snapshot:
            return None
        points = [
            HistogramDataPoint(
                attributes=self._attributes(values),
                start_time_unix_nano=start_time,
                time_unix_nano=now,
                count=sum(buckets),
                sum=total,
                bucket_counts=buckets,
                explicit_bounds=self.bounds,
                min=low,
                max=high,
            )
            for values, buckets, total, low, high in snapshot
        ]
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=Histogram(
                data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE
            ),
        )

    def _attributes(self, values: LabelValues | None) -> dict[str, Any]:
        if values is None:
            return dict(OVERFLOW_ATTRIBUTES)
        return {k: v for k, v in zip(self.labels, values, strict=True) if v is not None}


class InProcessHistograms:
    """The :class:`HistogramTotals` of one meter provider, added to what each reader
    collects (readers that mix in :class:`ProducingReader`).

    The SDK hands a reader only what it aggregated itself, and nothing at all when that
    is empty. So :meth:`bind` registers an observable gauge (:data:`SLOT`) that reports
    while any histogram has data; each reader replaces it with the histograms, in its
    instrumentation scope.
    """

    #: The observable gauge each reader replaces with the histograms (never exported).
    SLOT = "aigateway.in_process_histograms"

    __slots__ = ("_histograms", "_start")

    def __init__(self) -> None:
        self._histograms: list[HistogramTotals] = []
        self._start = time.time_ns()

    def bind(self, meter: Meter) -> None:
        """Register the slot on ``meter`` (once per provider, before any collection)."""
        meter.create_observable_gauge(self.SLOT, callbacks=[self._slot])

    def add(self, histogram: HistogramTotals) -> HistogramTotals:
        self._histograms.append(histogram)
        return histogram

    def _slot(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(1)] if any(h.has_data() for h in self._histograms) else []

    def merge(self, data: MetricsData) -> MetricsData:
        """``data`` with the slot replaced by the histograms."""
        now = time.time_ns()
        resources = []
        for resource in data.resource_metrics:
            scopes = []
            for scope in resource.scope_metrics:
                metrics = [m for m in scope.metrics if m.name != self.SLOT]
                if len(metrics) != len(scope.metrics):
                    for histogram in self._histograms:
                        metric = histogram.metric(self._start, now)
                        if metric is not None:
                            metrics.append(metric)
                if metrics:
                    scopes.append(ScopeMetrics(scope.scope, metrics, scope.schema_url))
            resources.append(ResourceMetrics(resource.resource, scopes, resource.schema_url))
        return MetricsData(resources)


class ProducingReader(MetricReader):
    """Mixed into a ``MetricReader`` class (first), merges :class:`InProcessHistograms`
    into what the reader receives; construct it with them first, then the reader's own
    arguments. ``_receive_metrics`` is the method the SDK documents for readers to
    override."""

    def __init__(self, histograms: InProcessHistograms, *args: Any, **kwargs: Any) -> None:
        self._histograms = histograms
        super().__init__(*args, **kwargs)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        super()._receive_metrics(  # type: ignore[safe-super]
            self._histograms.merge(metrics_data), timeout_millis, **kwargs
        )


class ProducingInMemoryMetricReader(ProducingReader, InMemoryMetricReader):
    """An in-memory reader (for tests) that sees the in-process histograms too."""


class ProducingPeriodicReader(ProducingReader, PeriodicExportingMetricReader):
    """A periodic push reader (OTLP) that exports the in-process histograms too."""
