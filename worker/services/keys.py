"""API keys: created, listed, revoked and checked. Roles say which endpoints a key opens:

- ``intake``: post notifications, cancel cases
- ``ops``: cases, the dashboard's data, dead letters (triage)
- ``compliance``: attempt exports, audit verification, packets
- ``admin``: keys

Each role opens its own endpoints only (``admin`` does not open the others). A key is
``gf_`` + 43 URL-safe characters (256 random bits), shown once when created; the database
keeps its SHA-256 and its first characters (``prefix``) to tell keys apart. Creating and
revoking are audited (key id and role, never the key).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from storage.db import transaction
from storage.models import ApiKey
from worker.services.audit import audit

__all__ = [
    "KEY_PREFIX",
    "NewKey",
    "Principal",
    "Role",
    "authenticate",
    "create_key",
    "hash_key",
    "list_keys",
    "revoke_key",
]

KEY_PREFIX = "gf_"
_SHOWN = 11  # characters of a key kept in clear: "gf_" + 8


class Role(StrEnum):
    INTAKE = "intake"
    OPS = "ops"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


@dataclass(frozen=True)
class NewKey:
    """A key just created: ``key`` is shown once and never stored."""

    id: str
    role: Role
    name: str
    key: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id (safe to log) and its role."""

    key_id: str
    role: Role


def hash_key(key: str) -> str:
    """SHA-256 hex of ``key`` (what the database keeps)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(sessions: sessionmaker[Session], role: Role, name: str, now: datetime) -> NewKey:
    """A new key with ``role``; audited ``key.created``."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        key_hash=hash_key(key), prefix=key[:_SHOWN], role=role.value, name=name, created_at=now
    )
    with transaction(sessions) as s:
        s.add(row)
        s.flush()
        audit(s, now, "key.created", None, key_id=row.id, role=role.value)
    return NewKey(row.id, role, name, key)


def authenticate(sessions: sessionmaker[Session], key: str) -> Principal | None:
    """The live (not revoked) key ``key`` as a Principal, or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 256:
        return None
    with sessions() as s:  # a read: nothing to commit
        row = s.scalars(
            select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
        ).one_or_none()
        return Principal(row.id, Role(row.role)) if row is not None else None


def list_keys(
    sessions: sessionmaker[Session], include_revoked: bool = False
) -> list[dict[str, Any]]:
    """Every key (live ones, or all), oldest first: id, prefix, role, name, times. No hashes."""
    with transaction(sessions) as s:
        q = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if not include_revoked:
            q = q.where(ApiKey.revoked_at.is_(None))
        return [
            {
                "id": k.id,
                "prefix": k.prefix,
                "role": k.role,
                "name": k.name,
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in s.scalars(q)
        ]


def revoke_key(sessions: sessionmaker[Session], key_id: str, now: datetime) -> bool | None:
    """Revoke the key whose id (or prefix, as ``keys list`` shows it) is ``key_id``: True when
    revoked now, False when it already was, None when no key matches (or several do)."""
    with transaction(sessions) as s:
        rows = list(
            s.scalars(
                select(ApiKey)
                .where(or_(ApiKey.id == key_id, ApiKey.prefix == key_id))
                .with_for_update()
            )
        )
        if len(rows) != 1:
            return None
        row = rows[0]
        if row.revoked_at is not None:
            return False
        row.revoked_at = now
        audit(s, now, "key.revoked", None, key_id=row.id, role=row.role)
        return True
