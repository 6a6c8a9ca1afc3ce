"""The message broker: Redis (default) or RabbitMQ, chosen in one place.

``GOODFAITH_BROKER=redis`` (with ``GOODFAITH_REDIS_URL``) or ``GOODFAITH_BROKER=rabbitmq``
(with ``GOODFAITH_RABBITMQ_URL``, default ``amqp://guest:guest@127.0.0.1:5672/``). Both carry
the same id-only messages on the same lane queues (``goodfaith.expedited``, ...; see
worker/actors.py); every message can be re-created from the database either way.

``prefix`` names the queues (``<prefix>.<lane>``): a simulation run gets its own, so it shares
a server with production or with other runs without taking their messages. On Redis the run
also gets its own key namespace; on RabbitMQ :func:`delete_queues` removes the run's queues.
"""

from __future__ import annotations

from typing import Literal

import dramatiq

BrokerKind = Literal["redis", "rabbitmq"]
BROKERS: tuple[BrokerKind, ...] = ("redis", "rabbitmq")


class BrokerUnavailable(RuntimeError):
    """The broker named cannot be reached (the message names the URL's host and the fix)."""


def make_broker(
    kind: BrokerKind,
    *,
    redis_url: str | None = None,
    rabbitmq_url: str | None = None,
    namespace: str | None = None,
) -> dramatiq.Broker:
    """A dramatiq broker of ``kind``. ``namespace`` (Redis only) isolates a run's keys."""
    if kind == "redis":
        from dramatiq.brokers.redis import RedisBroker

        if not redis_url:
            raise BrokerUnavailable(
                "the Redis broker needs GOODFAITH_REDIS_URL (e.g. redis://localhost:6379/0)"
            )
        if namespace:
            return RedisBroker(url=redis_url, namespace=namespace)  # type: ignore[no-untyped-call]
        return RedisBroker(url=redis_url)  # type: ignore[no-untyped-call]
    if kind == "rabbitmq":
        import pika
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        url = rabbitmq_url or "amqp://guest:guest@127.0.0.1:5672/"
        try:  # fail now, naming the server, rather than on the first message
            pika.BlockingConnection(pika.URLParameters(url)).close()
        except Exception as exc:
            host = pika.URLParameters(url).host
            raise BrokerUnavailable(
                f"RabbitMQ at {host} cannot be reached ({type(exc).__name__}): start "
                "rabbitmq-server or set GOODFAITH_RABBITMQ_URL"
            ) from exc
        # confirm_delivery: a publish returns once RabbitMQ holds the message
        return RabbitmqBroker(url=url, confirm_delivery=True)
    raise ValueError(f"unknown broker {kind!r}; known: {', '.join(BROKERS)}")


def delete_queues(broker: dramatiq.Broker) -> None:
    """Remove every queue ``broker`` declared (with its delay and dead-letter queues) from a
    RabbitMQ server: the end of a simulation run. Does nothing on other brokers."""
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.common import dq_name, xq_name

    if not isinstance(broker, RabbitmqBroker):
        return
    channel = broker.channel
    for queue in broker.get_declared_queues():
        for name in (queue, dq_name(queue), xq_name(queue)):
            channel.queue_delete(name)
