"""Queue health read from the broker: dramatiq's Redis keys (as dramatiq's own dashboard reads
them), or RabbitMQ's queue counters (:func:`rabbitmq_queue_health`).

dramatiq's Redis broker keeps, under its namespace (``dramatiq`` by default)::

    <ns>:<queue>            list of message ids waiting (``<queue>.DQ``: delayed ones)
    <ns>:<queue>.msgs       hash id → encoded message (JSON with ``message_timestamp``, ms)
    <ns>:<queue>.XQ         sorted set of dead-lettered message ids (dramatiq's own DLQ)
    <ns>:__heartbeats__     sorted set worker id → last heartbeat (ms)

A worker is alive when its last heartbeat is within the broker's heartbeat timeout (60 s).
dramatiq writes a heartbeat on every broker command, so a process that only enqueues (the API,
the scheduler) counts too while it is active, as in dramatiq's own dashboard.
Everything here is a handful of O(1) Redis reads per queue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HEARTBEAT_TIMEOUT_MS",
    "QueueHealth",
    "QueueStat",
    "queue_health",
    "rabbitmq_queue_health",
]

HEARTBEAT_TIMEOUT_MS = 60_000  # dramatiq.brokers.redis.DEFAULT_HEARTBEAT_TIMEOUT


@dataclass(frozen=True)
class QueueStat:
    """One queue: messages waiting (``depth``), delayed (``delayed``), dead-lettered by
    dramatiq (``dead``), and the age in seconds of the oldest waiting message (None: empty)."""

    queue: str
    depth: int
    delayed: int
    dead: int
    oldest_age_s: float | None


@dataclass(frozen=True)
class QueueHealth:
    """``workers_alive``: on Redis, broker connections with a recent heartbeat; on RabbitMQ,
    the most consumers any one lane queue has (each worker process consumes every queue of
    its lanes once). ``ages_known``: False when the broker cannot tell a message's age
    without taking it (RabbitMQ): the oldest-age gauge is then left out, not shown as 0."""

    queues: list[QueueStat]
    workers_alive: int
    ages_known: bool = True


def _oldest_age(r: Any, ns: str, queue: str, now_ms: int) -> float | None:
    first = r.lindex(f"{ns}:{queue}", 0)
    if first is None:
        return None
    raw = r.hget(f"{ns}:{queue}.msgs", first)
    try:
        stamp = int(json.loads(raw)["message_timestamp"]) if raw else None
    except (ValueError, KeyError, TypeError):
        stamp = None
    return None if stamp is None else max(0.0, (now_ms - stamp) / 1000.0)


def queue_health(r: Any, namespace: str, queues: Sequence[str], now_ms: int) -> QueueHealth:
    """Depth, delayed, dramatiq dead letters and oldest message age of each of ``queues``,
    and the workers alive, from the Redis client ``r`` (``now_ms``: Unix milliseconds)."""
    stats = [
        QueueStat(
            queue=q,
            depth=int(r.llen(f"{namespace}:{q}")),
            delayed=int(r.llen(f"{namespace}:{q}.DQ")),
            dead=int(r.zcard(f"{namespace}:{q}.XQ")),
            oldest_age_s=_oldest_age(r, namespace, q, now_ms),
        )
        for q in queues
    ]
    alive = int(r.zcount(f"{namespace}:__heartbeats__", now_ms - HEARTBEAT_TIMEOUT_MS, "+inf"))
    return QueueHealth(stats, alive)


def rabbitmq_queue_health(url: str, queues: Sequence[str]) -> QueueHealth:
    """Depth, delayed and dead-lettered messages of each of ``queues`` on the RabbitMQ server
    at ``url`` (AMQP), read with passive declares (which create nothing and change nothing):
    dramatiq keeps a queue's delayed messages in ``<queue>.DQ`` and its dead letters in
    ``<queue>.XQ``. A queue not declared yet counts as empty. One short connection a read (a
    Prometheus scrape); raises when the server does not answer."""
    import pika
    from dramatiq.common import dq_name, xq_name
    from pika.exceptions import ChannelClosedByBroker

    params = pika.URLParameters(url)
    params.socket_timeout = params.blocked_connection_timeout = 2
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()

        def counts(name: str) -> tuple[int, int]:
            nonlocal channel
            try:
                ok = channel.queue_declare(name, passive=True).method
            except ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                channel = connection.channel()  # a 404 closes the channel: open another
                return 0, 0
            return int(ok.message_count), int(ok.consumer_count)

        stats, consumers = [], 0
        for q in queues:
            depth, consuming = counts(q)
            consumers = max(consumers, consuming)
            stats.append(
                QueueStat(
                    queue=q,
                    depth=depth,
                    delayed=counts(dq_name(q))[0],
                    dead=counts(xq_name(q))[0],
                    oldest_age_s=None,
                )
            )
        return QueueHealth(stats, consumers, ages_known=False)
    finally:
        connection.close()
