"""The metrics ``hfvision serve`` exposes at ``GET /metrics``, through `prometheus_client`.

Each app (so each ``--workers`` process) records into its own ``CollectorRegistry``; the batch worker thread and the
event loop both record (prometheus_client's metrics are thread-safe).

>>> metrics = ServerMetrics()
>>> metrics.requests.labels(code="200").inc()
>>> metrics.sample("hfvision_requests_total", code="200")
1.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

#: The text exposition format ``generate_latest`` writes (0.0.4, what every Prometheus server scrapes).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: Batch-size buckets: powers of two up to 256.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Latency buckets in seconds, from 1 ms to 60 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics:
    """Requests by status code, errors by reason, micro-batch sizes, queue depth, in-flight requests, latencies."""

    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("hfvision_requests", "Inference requests by HTTP status code", ("code",), registry=r)
        self.errors = Counter(
            "hfvision_request_errors", "Failed inference requests by reason", ("reason",), registry=r
        )
        self.batch_size = Histogram(
            "hfvision_batch_size", "Requests per model call (micro-batch size)", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("hfvision_queue_depth", "Requests waiting for the model", registry=r)
        self.in_flight = Gauge("hfvision_requests_in_flight", "Requests being handled (queued or running)", registry=r)
        self.latency = Histogram(
            "hfvision_request_latency_seconds",
            "Request latency, body read to response",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_latency = Histogram(
            "hfvision_batch_latency_seconds", "Model time per micro-batch", buckets=LATENCY_BUCKETS, registry=r
        )

    def render(self) -> str:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry).decode()

    def sample(self, name: str, **labels: str) -> float:
        """The current value of one exposed sample (``0.0`` when it has not been recorded yet)."""
        return self.registry.get_sample_value(name, labels) or 0.0
