"""Nearest first: an alert to the incident's own area and two adjacent areas, at
SEND_RATE=50 with two workers, seen from the carrier.

``BENCH_NEAREST_N`` recipients (default 5,000): 30% in the incident's own area, the rest
split between two adjacent areas the dispatcher added. Target: every own-area message is
handed over before the first adjacent-area send (the adjacent batches are held until the
own area's are done, see ``rapidresponse.broadcast.release_held``). Also printed: when the
own area was done, and the whole send, against the pace SEND_RATE allows.
"""

from __future__ import annotations

import time

from sqlalchemy import select

from bench.fast_twilio import FastTwilio
from bench.harness import (
    TEXTS,
    Stack,
    Workers,
    add_subscribers,
    env_int,
    heading,
    line,
    make_area,
    note,
    stack,
)
from dispatch.alerts import approve_alert
from rapidresponse import broadcast
from rapidresponse.models import AlertKind, Delivery, Incident, IncidentState

RATE = 50
WORKERS = 2
OWN_SHARE = 0.3


def run() -> None:
    count = env_int("BENCH_NEAREST_N", 5_000)
    own = int(count * OWN_SHARE)
    each = (count - own) // 2
    heading(
        f"nearest first: SEND_RATE={RATE}, {WORKERS} workers, {own:,} in the incident's area "
        f"+ {each:,} in each of 2 adjacent areas"
    )
    with FastTwilio() as fake, stack(fake.url, send_rate=str(RATE)) as target:
        areas = [make_area(target, slug) for slug in ("cully", "concordia", "roseway")]
        own_ids = add_subscribers(target, own, [areas[0]])
        add_subscribers(target, each, [areas[1]], first=own)
        add_subscribers(target, each, [areas[2]], first=own + each)
        alert_id = _incident_alert(target, areas)
        approval = approve_alert(target.services, alert_id)
        started = time.time()
        with Workers(target) as workers:
            for _ in range(WORKERS):
                workers.start()
            _wait_for(fake, approval.recipients, timeout=approval.recipients / RATE * 1.5 + 60)
        report(target, fake, alert_id, own_ids, started, approval.recipients)


def _incident_alert(target: Stack, area_ids: list[int]) -> int:
    services = target.services
    with services.database.session() as session:
        incident = Incident(code="B3N4", state=IncidentState.CONFIRMED, area_id=area_ids[0])
        session.add(incident)
        session.flush()
        alert = broadcast.draft(
            session,
            kind=AlertKind.ALERT,
            texts=TEXTS,
            area_ids=area_ids,
            incident_id=incident.id,
            cipher=services.cipher,
        )
        return alert.id


def _wait_for(fake: FastTwilio, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(fake.records()) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"nearest: only {len(fake.records())} of {count} sends arrived")
        time.sleep(0.5)


def report(
    target: Stack,
    fake: FastTwilio,
    alert_id: int,
    own_ids: tuple[int, int],
    started: float,
    total: int,
) -> None:
    with target.services.database.session() as session:
        own_deliveries = {
            broadcast.callback_key(delivery_id)
            for delivery_id in session.scalars(
                select(Delivery.id).where(
                    Delivery.alert_id == alert_id, Delivery.subscriber_id.between(*own_ids)
                )
            )
        }
    records = fake.records()
    own_times = [r.at for r in records if r.delivery in own_deliveries]
    other_times = [r.at for r in records if r.delivery not in own_deliveries]
    last_own, first_other = max(own_times), min(other_times)
    line(
        "own area handed over before the first adjacent send",
        f"{(first_other - last_own) * 1e3:+.0f} ms",
        "> 0",
        last_own < first_other,
    )
    whole = max(r.at for r in records) - started
    line(
        "own area done after approval",
        f"{last_own - started:.1f} s",
        f"~{len(own_times) / RATE:.0f} s at {RATE}/s",
    )
    line("whole send", f"{whole:.1f} s", f"~{total / RATE:.0f} s at {RATE}/s")
    note(f"{len(own_times):,} own-area and {len(other_times):,} adjacent-area messages")
