"""Nothing silent: what a case, the run report and intake say when an outcome would otherwise
pass unnoticed. Pure: texts and the rules that decide them, no I/O.

Each notice is short (``Case.attention`` holds 256 characters, see
:func:`worker.domain.watchdog.flag`) and names ids and states only, never PHI.

========================== ========================================= =========================
situation                  when                                       text (``Case.attention``)
========================== ========================================= =========================
received past due          ``opened_at >= due_at``                    ``received past its due
                                                                      time: deliver at once``
no outreach window         ``opened_at >= assemble_at`` (not past     ``received after the
                           due)                                       assembly cutoff: no time
                                                                      for outreach``
short window (standard)    a request's window allowed fewer business  ``window allowed N
                           windows than the attempts required         business windows for
                                                                      <provider id>``
quarantined reply          a reply matched to a request could not be  ``reply from <provider id>
                           used                                       quarantined: see
                                                                      documents``
unknown retrieval vendor   a vendor channel names a vendor id that    ``retrieval vendor
                           GOODFAITH_RETRIEVAL_VENDORS lacks          <id> is not configured:
                                                                      that channel will fail``
========================== ========================================= =========================
"""

from __future__ import annotations

from datetime import datetime

__all__ = [
    "quarantined_reply",
    "received_late",
    "short_window",
    "unknown_vendor",
    "windows_note",
]


def received_late(opened_at: datetime, assemble_at: datetime, due_at: datetime) -> str | None:
    """The notice for a case whose window is gone before it opens, or None."""
    if opened_at >= due_at:
        return "received past its due time: deliver at once"
    if opened_at >= assemble_at:
        return "received after the assembly cutoff: no time for outreach"
    return None


def windows_note(windows: int) -> str:
    """How the attestation and the report say how many business windows a window allowed."""
    return f"window allowed {windows} business window{'' if windows == 1 else 's'}"


def short_window(provider_id: str, windows: int, required: int) -> str | None:
    """The notice for a standard request whose window cannot give each of its ``required``
    attempts a business window of its own, or None."""
    if windows >= required:
        return None
    return f"{windows_note(windows)} for {provider_id}"


def quarantined_reply(provider_id: str) -> str:
    """The notice for a reply from ``provider_id`` that was quarantined (unusable)."""
    return f"reply from {provider_id} quarantined: see documents"


def unknown_vendor(vendor_id: str) -> str:
    """The notice for a vendor channel whose vendor id is not configured."""
    return f"retrieval vendor {vendor_id[:64]} is not configured: that channel will fail"
