"""Server metrics in the Prometheus text exposition format (version 0.0.4), without a client library.

Counters, gauges and histograms with labels, thread-safe (the batch worker thread and the event loop both record).
``Registry.render()`` produces what ``GET /metrics`` returns.

>>> registry = Registry()
>>> requests = registry.counter("hfvision_requests_total", "Requests by status code", ("code",))
>>> requests.inc(code="200")
>>> print(registry.render().splitlines()[2])
hfvision_requests_total{code="200"} 1.0
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Batch-size buckets: powers of two up to 256.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Latency buckets in seconds, from 1 ms to 60 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()):
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if not labels and not self.label_names:  # the common case, recorded per request: keep it cheap
            return ()
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (amount={amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(_Metric):
    """A value that goes up and down (no labels needed for the server's gauges, but supported)."""

    kind = "gauge"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._values: dict[tuple[str, ...], float] = {}

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items()) or ([((), 0.0)] if not self.label_names else [])
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Histogram(_Metric):
    """Cumulative buckets, ``_sum`` and ``_count`` per label set."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = (), buckets: Sequence[float] = ()):
        super().__init__(name, help_text, label_names)
        if not buckets or list(buckets) != sorted(set(buckets)):
            raise ValueError(f"histogram {name}: buckets must be strictly increasing, got {buckets}")
        self.buckets = tuple(float(b) for b in buckets)
        self._data: dict[tuple[str, ...], list] = {}  # key -> [counts per bucket (+Inf last), sum]

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)  # first bucket with upper bound >= value
        with self._lock:
            counts, total = self._data.setdefault(key, [[0] * (len(self.buckets) + 1), 0.0])
            counts[index] += 1
            self._data[key][1] = total + value

    def count(self, **labels: str) -> int:
        with self._lock:
            data = self._data.get(self._key(labels))
            return sum(data[0]) if data else 0

    def bucket_counts(self, **labels: str) -> dict[float, int]:
        """Non-cumulative count per bucket upper bound (``inf`` for the last), for tests and reports."""
        with self._lock:
            data = self._data.get(self._key(labels))
            counts = list(data[0]) if data else [0] * (len(self.buckets) + 1)
        return dict(zip((*self.buckets, math.inf), counts))

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, (list(v[0]), v[1])) for k, v in self._data.items())
        lines = []
        for key, (counts, total) in items:
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts):
                running += n
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return lines


class Registry:
    """A set of metrics rendered together."""

    def __init__(self):
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric):
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, label_names))

    def gauge(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, label_names))

    def histogram(self, name: str, help_text: str, label_names: Sequence[str] = (), buckets=LATENCY_BUCKETS):
        return self._add(Histogram(name, help_text, label_names, buckets))

    def render(self) -> str:
        lines = []
        for metric in self._metrics.values():
            lines += metric.header() + metric.render()
        return "\n".join(lines) + "\n"


class ServerMetrics:
    """The metrics ``hfvision serve`` exposes at ``GET /metrics``."""

    def __init__(self):
        self.registry = Registry()
        r = self.registry
        self.requests = r.counter("hfvision_requests_total", "Inference requests by HTTP status code", ("code",))
        self.errors = r.counter("hfvision_request_errors_total", "Failed inference requests by reason", ("reason",))
        self.batch_size = r.histogram(
            "hfvision_batch_size", "Requests per model call (micro-batch size)", buckets=BATCH_BUCKETS
        )
        self.queue_depth = r.gauge("hfvision_queue_depth", "Requests waiting for the model")
        self.in_flight = r.gauge("hfvision_requests_in_flight", "Requests being handled (queued or running)")
        self.latency = r.histogram("hfvision_request_latency_seconds", "Request latency, body read to response")
        self.batch_latency = r.histogram("hfvision_batch_latency_seconds", "Model time per micro-batch")

    def render(self) -> str:
        return self.registry.render()
