"""Prometheus metrics of the storage engine.

Labelled by the ``desc`` each caller passes to ``run_interaction``: it must be a fixed string
naming the operation (never an id), or the label set grows without bound.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

transaction_seconds = Histogram(
    "hearth_db_transaction_seconds",
    "Time spent in a database transaction on a pool thread, retries included",
    ["desc"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
transaction_retries = Counter(
    "hearth_db_transaction_retries",
    "Transactions rolled back and run again, by reason",
    ["desc", "reason"],
)
