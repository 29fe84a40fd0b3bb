"""The simulator's outbox: what the SimulatorSender 'sent', for exploring the demo.

Registered only with SMS_BACKEND=simulator. Numbers are masked to their last four
digits here as everywhere else on staff pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, render_template
from sqlalchemy import select

from rapidresponse.crypto import Purpose
from rapidresponse.models import OutboxMessage
from rapidresponse.phones import masked
from web.context import services

bp = Blueprint("simulator", __name__, url_prefix="/simulator")

OUTBOX_PAGE_SIZE = 200


@dataclass(frozen=True)
class OutboxEntry:
    sid: str
    to: str
    body: str
    segments: int
    created_at: datetime


@bp.get("/outbox")
def outbox() -> str:
    found = services()
    with found.database.session() as session:
        rows = session.scalars(
            select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(OUTBOX_PAGE_SIZE)
        ).all()
        entries = [
            OutboxEntry(
                sid=row.sid,
                to=masked(found.cipher.decrypt(row.to_sealed, Purpose.OUTBOX_TO)),
                body=found.cipher.decrypt(row.body_sealed, Purpose.OUTBOX_BODY),
                segments=row.segments,
                created_at=row.created_at,
            )
            for row in rows
        ]
    return render_template("simulator/outbox.html", entries=entries)
