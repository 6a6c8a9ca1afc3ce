"""Use cases, one module per pipeline stage; each handler is short and takes only what it uses.

- ``notifications``: intake, a notification becomes a case with one open request per provider
- ``opening``: store our copies of the EOC and the authorization; start outreach
- ``outreach``: plan an attempt (pure policy), write it, send it (or adopt one a crash left
  at the far side); fax status webhooks
- ``reconcile``: a fax status, by webhook or by asking the vendor when none came (``check``)
- ``inbound``: inbound faxes and polled FHIR Tasks → checked documents → closed requests
- ``inbox``: documents that matched no request, assigned by ops (audited)
- ``packet``: close what is open at the cutoff, build the packet, queue its delivery
- ``delivery``: upload to the agency (or fax it, confirmed later by the fax vendor's webhook
  or status); transient failures retry on a timer
- ``cancel``: withdrawal or reversal; open FHIR Tasks withdrawn at the far side
- ``closing``: closing a request (shared by inbound, packet and cancel)
- ``campaigns``: bulk record retrieval loaded at once, chased in the bulk lane, cancelled;
  ``bulk``: a campaign's first attempts in batches, a few transactions for many requests;
  ``coalescing``: one outreach per provider for every open request of one member
- ``watchdog``: overdue cases driven again and flagged (the scheduler runs it every tick)
- ``deadletters``: messages dramatiq gave up on, recorded, flagged and retried by ops
- ``quality``: QA flags of a received document (duplicate, cloned, wrong patient, ...);
  ``review``: the ops review queue where a person releases or rejects flagged documents
- ``mapping``: ORM rows ↔ domain values; ``audit``: the audit trail; ``deps``: injection

The shape of every handler: load state → decide (pure domain code in ``worker/domain/``) →
persist → return the follow-up commands, which the caller enqueues after the commit.
Connectors are called outside transactions; every handler is safe to run twice for the same
command (redelivered messages are expected). A handler's keyword-only parameters name what it
needs from the :class:`~worker.wiring.Container`; :func:`run_command` injects them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from connectors.base import FaxReceivedEvent, FaxStatusEvent
from connectors.vendor.orders import OrderEvent
from worker.commands import (
    AssemblePacket,
    CancelAttempt,
    Command,
    DeliverPacket,
    FirstAttempts,
    IngestInbound,
    OpenCase,
    PlanOutreach,
    PollTask,
    ReconcileAttempt,
    SendAttempt,
    SweepInbound,
)
from worker.notification import IntakeError
from worker.services import (
    bulk,
    campaigns,
    cancel,
    deadletters,
    delivery,
    inbound,
    inbox,
    notifications,
    opening,
    outreach,
    packet,
    reconcile,
    review,
)
from worker.services.deadletters import RetryOutcome
from worker.services.deps import call
from worker.services.inbox import AssignOutcome
from worker.services.notifications import IntakeResult

if TYPE_CHECKING:
    from worker.wiring import Container

#: One handler per command; the actors and the inline dispatcher run them through
#: :func:`run_command`.
HANDLERS: dict[type, Callable[..., list[Command]]] = {
    OpenCase: opening.open_case,
    PlanOutreach: outreach.plan_outreach,
    SendAttempt: outreach.send_attempt,
    FirstAttempts: bulk.first_attempts,
    PollTask: inbound.poll_task,
    CancelAttempt: cancel.cancel_attempt,
    ReconcileAttempt: reconcile.reconcile_attempt,
    IngestInbound: inbound.ingest_inbound,
    SweepInbound: reconcile.sweep_inbound,
    AssemblePacket: packet.assemble_packet,
    DeliverPacket: delivery.deliver_packet,
}


def run_command(c: Container, cmd: Command) -> Sequence[Command]:
    """Run one command's handler; returns its follow-up commands."""
    return call(HANDLERS[type(cmd)], c, cmd)


# --- entry points for the API and the CLI: run, then enqueue what follows -------------------


def intake(c: Container, data: Any) -> IntakeResult:
    """Open a case from a notification document (see :func:`worker.services.notifications.intake`)."""
    result = call(notifications.intake, c, data)
    c.dispatcher.enqueue(result.follow)
    return result


def record_fax_status(c: Container, event: FaxStatusEvent) -> list[Command]:
    """A status webhook for an outbound fax — a packet faxed to an agency, else a request
    letter; returns the commands to enqueue. A progress event (queued, media processed,
    sending) changes nothing on either: it is answered without a database round trip (a
    vendor sends three of them for every fax)."""
    if event.outcome is None:
        return []
    about_packet = call(delivery.record_fax_status, c, event)
    if about_packet is not None:
        return about_packet
    return call(outreach.record_fax_status, c, event)


def record_inbound_fax(c: Container, event: FaxReceivedEvent) -> list[Command]:
    """An inbound fax webhook; returns the commands to enqueue."""
    return call(inbound.record_inbound_fax, c, event)


def record_vendor_event(c: Container, event: OrderEvent) -> list[Command]:
    """A retrieval vendor's (verified) callback; returns the commands to enqueue."""
    return call(inbound.record_vendor_event, c, event)


def record_task_notification(c: Container, key: str, focus: tuple[str, ...]) -> list[Command]:
    """A provider's (verified) notification that the Task of attempt ``key`` changed;
    returns the commands to enqueue."""
    return call(inbound.record_task_notification, c, key, focus)


def assign_document(
    c: Container, document_id: str, request: str, assigned_by: str
) -> AssignOutcome:
    """Ops file an unmatched document with a request (its id or reference), audited; the
    document then counts for the request (see :mod:`worker.services.inbox`)."""
    outcome, follow = call(inbox.assign_document, c, document_id, request, assigned_by)
    c.dispatcher.enqueue(follow)
    return outcome


def cancel_case(c: Container, case_id: str, reason: str) -> bool:
    """Withdrawal or insurer reversal; False when the case is unknown or already closed. What
    is still open at the far side (FHIR Tasks) is withdrawn there next."""
    cancelled, follow = call(cancel.cancel_case, c, case_id, reason)
    c.dispatcher.enqueue(follow)
    return cancelled


def record_dead_letter(
    c: Container, cmd: Command, actor: str, message_id: str, error: str, retries: int
) -> str | None:
    """A message dramatiq gave up on: record it and flag its case (the dead-letter middleware).
    A batch (``FirstAttempts``) is recorded as one dead letter per request, each the
    ``PlanOutreach`` that an ops retry enqueues, flagging that request's case; returns the
    first one's id."""
    if isinstance(cmd, FirstAttempts):
        ids = [
            call(deadletters.record_dead_letter, c, PlanOutreach(request_id), actor,
                 f"{message_id}/{i}", error, retries)
            for i, request_id in enumerate(cmd.ids)
        ]  # fmt: skip
        return ids[0] if ids else None
    return call(deadletters.record_dead_letter, c, cmd, actor, message_id, error, retries)


def retry_dead_letter(c: Container, letter_id: str) -> RetryOutcome:
    """Ops retry one dead letter: its command is enqueued again and the row marked retried."""
    outcome, follow = call(deadletters.retry_dead_letter, c, letter_id)
    c.dispatcher.enqueue(follow)
    return outcome


# --- campaigns (issue 11): bulk record retrieval ------------------------------------------


def load_campaign(
    c: Container,
    data: Any,
    created_by: str,
    progress: Callable[[str, int, int], None] | None = None,
    key: str | None = None,
) -> campaigns.LoadResult:
    """Validate a campaign document (every row; CampaignError names each bad value, nothing is
    stored) and store it in one transaction; its cases are opened by the scheduler, a batch a
    tick. ``progress(phase, done, total)`` follows a long load. The same load again (same
    ``key``, or same content without one) returns the first one's campaign, ``created=False``."""
    from config.jurisdictions import UnknownJurisdiction, get_jurisdiction
    from worker.campaign import CampaignError, parse_campaign

    def today(code: str) -> Any:
        try:
            return c.clock.now().astimezone(get_jurisdiction(code).tz).date()
        except UnknownJurisdiction as exc:
            raise CampaignError([(0, "jurisdiction", str(exc).strip("'\""))]) from None

    def checked(n: int) -> None:
        if progress is not None:
            progress("checked", n, 0)

    doc = parse_campaign(data, today=today, progress=checked)
    return call(campaigns.load_campaign, c, doc, created_by, progress, key)


def cancel_campaign(c: Container, campaign_id: str, reason: str, by: str) -> int | None:
    """Cancel a campaign's open requests (audited); None when there is no such campaign."""
    cancelled, follow = call(campaigns.cancel_campaign, c, campaign_id, reason, by)
    c.dispatcher.enqueue(follow)
    return cancelled


# --- the ops review queue (issue 10): flagged documents wait for a person ------------------


def review_queue(c: Container) -> list[review.ReviewItem]:
    """Documents waiting for review, the case due soonest first."""
    return call(review.pending_reviews, c)


def review_document(
    c: Container, document_id: str, decision: review.Decision, reviewer: str, note: str = ""
) -> review.ReviewOutcome:
    """Release or reject one pending document (audited) and enqueue the packet it unblocks."""
    outcome, follow = call(review.decide, c, document_id, decision, reviewer, note)
    c.dispatcher.enqueue(follow)
    return outcome


__all__ = [
    "HANDLERS",
    "AssignOutcome",
    "IntakeError",
    "IntakeResult",
    "RetryOutcome",
    "assign_document",
    "cancel_campaign",
    "cancel_case",
    "intake",
    "load_campaign",
    "record_dead_letter",
    "record_fax_status",
    "record_inbound_fax",
    "record_task_notification",
    "retry_dead_letter",
    "review_document",
    "review_queue",
    "run_command",
]
