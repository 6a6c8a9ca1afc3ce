"""dramatiq actors: thin. Decode the id, run the service function, enqueue its follow-ups.

Actors are declared against a broker handed in (``register_actors``), never at import, so
importing this module never reaches for RabbitMQ or Redis. Every message carries one id.

One actor per command; one queue per lane (``goodfaith.expedited``, ``goodfaith.standard``,
``goodfaith.bulk``). The dispatcher looks up each command's lane (``services/lanes.py``) and
sends the message to that lane's queue, so a worker started for one lane
(``goodfaith worker --lanes expedited``) never waits behind another lane's backlog.
"""

from __future__ import annotations

import contextvars
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from worker import wiring
from worker.commands import Command
from worker.commands import entity_id as id_of
from worker.domain.lanes import LANES, Lane
from worker.services import HANDLERS, record_dead_letter, run_command
from worker.services.deps import call
from worker.services.lanes import CASE_BOUND, lanes_of

#: Messages enqueued before lanes existed wait here; standard-lane workers drain it.
LEGACY_QUEUE = "goodfaith"

_log = structlog.get_logger("goodfaith.actors")


def queue_name(lane: Lane, prefix: str = LEGACY_QUEUE) -> str:
    """The dramatiq queue of ``lane``, e.g. ``goodfaith.expedited`` (``prefix``: a simulation
    run's own queues on a shared broker, worker/brokers.py)."""
    return f"{prefix}.{lane.value}"


def lane_queues(lanes: Sequence[Lane], prefix: str = LEGACY_QUEUE) -> list[str]:
    """The queues a worker for ``lanes`` consumes (the standard lane also drains the legacy one)."""
    queues = [queue_name(lane, prefix) for lane in lanes]
    return [*queues, prefix] if Lane.STANDARD in lanes else queues


def _lane_of_queue(name: str) -> Lane | None:
    """``goodfaith.expedited`` (any prefix) → the expedited lane; None for another queue."""
    suffix = name.rpartition(".")[2]
    return Lane(suffix) if suffix in _LANE_NAMES else None


_LANE_NAMES = frozenset(lane.value for lane in LANES)


ACTOR_OPTIONS: dict[str, Any] = {
    "max_retries": 5,  # dramatiq's default is 20; most of our failures need a person by then
    "min_backoff": 1_000,  # milliseconds
    "max_backoff": 60_000,
}


def actor_name(command_type: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", command_type.__name__).lower()


class DramatiqDispatcher:
    """Enqueues commands as dramatiq messages (one actor per command type), each on the queue
    of its case's lane. Messages carry the command's one id."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        actors: dict[type, dramatiq.Actor[Any, Any]],
        container: Callable[[], wiring.Container],
        prefix: str = LEGACY_QUEUE,
    ) -> None:
        self.broker = broker
        self.actors = actors
        self._container = container
        self.prefix = prefix

    def bind(self, container: wiring.Container) -> None:
        """Look lanes up in ``container``'s database (``build_container`` calls this)."""
        self._container = lambda: container

    def enqueue(self, commands: Iterable[Command]) -> None:
        cmds = list(commands)
        if not cmds:
            return
        by_lane: dict[Lane, list[Command]] = defaultdict(list)
        inherited = _CASE_LANE.get()
        if inherited is not None:  # follow-ups of one case's message: its lane, no query
            lanes = [inherited if type(cmd) in CASE_BOUND else Lane.STANDARD for cmd in cmds]
        else:
            lanes = call(lanes_of, self._container(), cmds)
        for cmd, lane in zip(cmds, lanes, strict=True):
            by_lane[lane].append(cmd)
        for lane in LANES:  # the most urgent first
            for cmd in by_lane.get(lane, ()):
                message = self.actors[type(cmd)].message(*vars(cmd).values())
                self.broker.enqueue(message.copy(queue_name=queue_name(lane, self.prefix)))


#: The lane of the case whose message this worker thread is running (None: no such message).
#: Its follow-up commands are work of the same case, so they take that lane without asking
#: the database (``CaseLane`` sets it).
_CASE_LANE: contextvars.ContextVar[Lane | None] = contextvars.ContextVar(
    "goodfaith_case_lane", default=None
)
_CASE_BOUND_ACTORS = frozenset(actor_name(t) for t in CASE_BOUND)


class CaseLane(Middleware):
    """While a message of a case-bound command runs (``services/lanes.py``), remembers its
    lane (from its queue) for the follow-ups it enqueues."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        lane = _lane_of_queue(message.queue_name)
        _CASE_LANE.set(lane if message.actor_name in _CASE_BOUND_ACTORS else None)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        _CASE_LANE.set(None)

    after_skip_message = after_process_message


#: Follow-ups of a bulk-lane message run at once in the same thread, one after the other, at
#: most this many after the message's own command (see :func:`_make_fn`).
INLINE_STEPS = 3


def _make_fn(
    command_type: type, container: Callable[[], wiring.Container]
) -> Callable[[str], None]:
    def run(entity_id: str) -> None:
        """Run the command; in the bulk lane (campaigns), while it leads to exactly one next
        step of the same case (open → plan → send), run that step here too instead of a
        round trip through the broker. A step that fails is enqueued as its own message (its
        own retries, its dead letter); several follow-ups are enqueued so other threads take
        them in parallel. A crash in the middle loses nothing the timers do not re-drive, as
        with a lost message. Reviews keep one message a step: each step of an expedited
        case is its own short message, never behind a chain of another case's steps."""
        c = container()
        follow = run_command(c, command_type(entity_id))
        steps = 0
        while (
            steps < INLINE_STEPS
            and len(follow) == 1
            and type(follow[0]) in CASE_BOUND
            and _CASE_LANE.get() is Lane.BULK
        ):
            step, steps = follow[0], steps + 1
            structlog.contextvars.bind_contextvars(
                actor=actor_name(type(step)), entity_id=id_of(step)
            )
            try:
                follow = run_command(c, step)
            except Exception as exc:
                _log.warning("inline_step.failed", error=type(exc).__name__)
                follow = [step]
                break
        c.dispatcher.enqueue(follow)

    run.__name__ = actor_name(command_type)
    return run


def register_actors(
    broker: dramatiq.Broker,
    container: Callable[[], wiring.Container] = wiring.current,
    prefix: str = LEGACY_QUEUE,
) -> DramatiqDispatcher:
    """Declare the lane queues (``<prefix>.<lane>``) and one actor per command on ``broker``;
    returns the dispatcher that sends to them."""
    for queue in lane_queues(LANES, prefix):
        broker.declare_queue(queue)
    if not any(isinstance(m, CaseLane) for m in broker.middleware):
        broker.add_middleware(CaseLane())
    actors: dict[type, dramatiq.Actor[Any, Any]] = {}
    for command_type in HANDLERS:
        name = actor_name(command_type)
        if name in broker.actors:
            actors[command_type] = broker.get_actor(name)
            continue
        actors[command_type] = dramatiq.Actor(
            _make_fn(command_type, container),
            broker=broker,
            actor_name=name,
            queue_name=queue_name(Lane.STANDARD, prefix),
            priority=0,
            options=dict(ACTOR_OPTIONS),
        )
    return DramatiqDispatcher(broker, actors, container, prefix)


class LogContext(Middleware):
    """Binds the message id, actor and entity id to structlog's context for each message."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            message_id=message.message_id,
            actor=message.actor_name,
            entity_id=message.args[0] if message.args else None,
            queue=message.queue_name,
        )

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is not None:
            structlog.get_logger("goodfaith.actors").warning(
                "message.failed",
                error=type(exception).__name__,
                retries=message.options.get("retries", 0),
            )
        structlog.contextvars.clear_contextvars()

    after_skip_message = after_process_message


class CloseOnShutdown(Middleware):
    """Closes the process's container (``wiring.close_current``) once its worker has stopped:
    the audit events its last messages recorded are chained before the process exits, not
    left for the scheduler's next tick."""

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        try:
            wiring.close_current()
        except Exception as exc:  # exiting anyway: what is pending is chained by the tick
            _log.warning("container.close_failed", error=type(exc).__name__)


class InFlight(Middleware):
    """Counts messages enqueued but not yet processed, for the in-process simulation driver.

    ``wait_idle`` returns once every message sent through this broker has been processed.
    Only meaningful when all producers and consumers share this process. Add it with
    ``before=Retries`` so a retry is counted before the failed run is counted done.
    """

    def __init__(self) -> None:
        self._count = 0
        self._cond = threading.Condition()

    @property
    def count(self) -> int:
        with self._cond:
            return self._count

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int) -> None:
        with self._cond:
            self._count += 1

    def _done(self) -> None:
        with self._cond:
            self._count -= 1
            if self._count <= 0:
                self._cond.notify_all()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._done()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._done()

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        # A delayed message (a retry) is counted when sent to the delay queue and again when
        # moved to its queue; the delay-queue copy is only acked, never processed.
        if message.queue_name.endswith(".DQ"):
            self._done()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is in flight; False on timeout (seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count <= 0, timeout=timeout)


class DeadLetters(Middleware):
    """Records every message dramatiq gives up on (retries exhausted) as a ``DeadLetter`` row
    and flags its case (``services.record_dead_letter``): ids and the error's type only.

    Add it with ``broker.add_middleware(DeadLetters(...), before=Retries)``: dramatiq runs
    ``after_*`` hooks in reverse order, and this one reads ``message.failed``, which ``Retries``
    sets in its own ``after_process_message``. Recording never raises into the worker."""

    def __init__(self, container: Callable[[], wiring.Container] = wiring.current) -> None:
        self.container = container
        self.commands = {actor_name(t): t for t in HANDLERS}

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        command_type = self.commands.get(message.actor_name)
        if exception is None or not message.failed or command_type is None or not message.args:
            return
        log = structlog.get_logger("goodfaith.actors")
        try:
            record_dead_letter(
                self.container(),
                command_type(str(message.args[0])),
                message.actor_name,
                message.message_id,
                type(exception).__name__,
                int(message.options.get("retries", 0)),
            )
        except Exception as exc:  # the database is down too: the watchdog still finds the case
            log.error("dead_letter.unrecorded", error=type(exc).__name__)
