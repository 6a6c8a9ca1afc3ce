"""The module ``dramatiq`` imports in production (``goodfaith worker``).

dramatiq's CLI needs a module-level broker, so this one module builds it from settings when
imported; every other module is free of import-time side effects. The container (database,
object store, connectors) is built lazily on the first message.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import Retries

from config.logging import configure_logging
from config.settings import get_settings
from worker import wiring
from worker.actors import CloseOnShutdown, DeadLetters, LogContext, register_actors
from worker.brokers import BrokerUnavailable, make_broker

_settings = get_settings()
configure_logging(_settings.log_level, _settings.log_format)
try:  # GOODFAITH_BROKER: redis (GOODFAITH_REDIS_URL) or rabbitmq (GOODFAITH_RABBITMQ_URL)
    broker = make_broker(
        _settings.broker, redis_url=_settings.redis_url, rabbitmq_url=_settings.rabbitmq_url
    )
except BrokerUnavailable as exc:
    raise SystemExit(f"goodfaith: {exc}") from None
broker.add_middleware(LogContext())
broker.add_middleware(CloseOnShutdown())
broker.add_middleware(DeadLetters(wiring.current), before=Retries)  # runs after it: see class
dramatiq.set_broker(broker)
dispatcher = register_actors(broker, wiring.current, _settings.queue_prefix)


wiring.set_factory(
    lambda: wiring.build_container(_settings, dispatcher=dispatcher, background_audit=True)
)
