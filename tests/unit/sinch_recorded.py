"""Payloads in the shapes Sinch Fax API v3 documents (developers.sinch.com, Fax API 3.0: the
Fax object, the FaxList, the FAX_COMPLETED and INCOMING_FAX callbacks, the error body), with
our values filled in. The contract suite replays them to the adapter as a far side that is
not our simulator."""

from __future__ import annotations

from typing import Any

PROJECT = "1c9b5a0e-2f3d-4c1b-9d7e-8f6a5b4c3d2e"
FAX_ID = "01HXYZ5N4A8R7Q3K2M1P0TWV9B"
INBOUND_ID = "01HXYZ7P2C6D5E4F3G2H1J0K9L"
CREATED = "2026-03-02T14:00:00Z"
COMPLETED = "2026-03-02T14:02:10Z"


def fax(status: str, *, key: str, to: str, **extra: Any) -> dict[str, Any]:
    """An outbound Fax object as ``POST /faxes`` and ``GET /faxes/{id}`` return it."""
    body: dict[str, Any] = {
        "id": FAX_ID,
        "direction": "OUTBOUND",
        "from": "+16175550000",
        "to": to,
        "contentUrl": ["https://carrier.example/letters/GF-OOOO0001.pdf"],
        "numberOfPages": 1,
        "status": status,
        "price": {"amount": "0.07", "currencyCode": "USD"},
        "createTime": CREATED,
        "headerText": "",
        "headerPageNumbers": True,
        "headerTimeZone": "America/New_York",
        "retryDelaySeconds": 60,
        "labels": {"goodfaithKey": key},
        "callbackUrl": "https://carrier.example/webhooks/sinch",
        "callbackUrlContentType": "application/json",
        "imageConversionMethod": "HALFTONE",
        "projectId": PROJECT,
        "serviceId": "01HSERVICE0000000000000000",
        "maxRetries": 0,
        "retryCount": 0,
        "hasFile": False,
    }
    if status in ("COMPLETED", "FAILURE"):
        body["completedTime"] = COMPLETED
    if status == "COMPLETED":
        body["pagesSentSuccessfully"] = 1
    body.update(extra)
    return body


def fax_list(*faxes: dict[str, Any]) -> dict[str, Any]:
    """``GET /faxes``: a FaxList page."""
    return {
        "faxes": list(faxes),
        "pageNumber": 1,
        "pageSize": 100,
        "totalItems": len(faxes),
        "totalPages": 1,
    }


def fax_completed(status: str, *, key: str, to: str, **extra: Any) -> dict[str, Any]:
    """The FAX_COMPLETED callback as JSON (``callbackUrlContentType: application/json``)."""
    return {
        "event": "FAX_COMPLETED",
        "eventTime": COMPLETED,
        "fax": fax(status, key=key, to=to, **extra),
    }


def incoming_fax(sender: str, to: str = "+16175550000") -> dict[str, Any]:
    """The INCOMING_FAX callback's fields (sent as multipart/form-data by default)."""
    return {
        "event": "INCOMING_FAX",
        "eventTime": "2026-03-02T15:02:10Z",
        "fax": {
            "id": INBOUND_ID,
            "direction": "INBOUND",
            "from": sender,
            "to": to,
            "numberOfPages": 3,
            "status": "COMPLETED",
            "price": {"amount": "0.07", "currencyCode": "USD"},
            "createTime": "2026-03-02T15:01:00Z",
            "completedTime": "2026-03-02T15:02:10Z",
            "projectId": PROJECT,
            "serviceId": "01HSERVICE0000000000000000",
            "hasFile": True,
        },
    }


def error(code: int, status: str, message: str, field: str | None = None) -> dict[str, Any]:
    """Sinch's error body."""
    details = []
    if field:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        ]
    return {"code": code, "message": message, "status": status, "details": details}
