"""Prometheus metrics for one app instance (its own registry, so several apps can live in one process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("seq2seq_requests_total", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.latency = Histogram("seq2seq_request_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.batch_sentences = Histogram("seq2seq_batch_sentences", "sentences per decoding batch",
                                         buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("seq2seq_batch_requests", "requests per decoding batch",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.decode_seconds = Histogram("seq2seq_batch_decode_seconds", "time the decoder spent on each batch",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.queue_sentences = Gauge("seq2seq_queue_sentences", "sentences waiting to be decoded", registry=r)
        self.sentences = Counter("seq2seq_sentences_translated_total", "sentences translated", ["model"], registry=r)
        self.tokens = Counter("seq2seq_target_tokens_total", "target subword tokens produced", ["model"], registry=r)
        self.rejected = Counter("seq2seq_rejected_total", "requests refused before decoding", ["reason"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
