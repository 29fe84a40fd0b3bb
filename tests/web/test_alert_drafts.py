"""What a dispatcher changes in an alert before and after it goes: adjacent areas (the
incident's own area sent first, the others held back until it is handed over), a line of
their own per language, and a correction of the area or the time."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from flask.testing import FlaskClient
from sqlalchemy import func, select

from dispatch import broadcast as jobs
from dispatch.alerts import approve_alert, draft_for_incident
from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.areas import find_area
from rapidresponse.composer import local_time
from rapidresponse.models import (
    Alert,
    AlertApproval,
    AuditEvent,
    Delivery,
    DeliveryStatus,
    Incident,
    IncidentState,
    Language,
    StaffUser,
    Subscription,
    alert_areas,
    utcnow,
)
from tests.factories import add_many_subscribers
from tests.web.staff_helpers import post_form
from tests.web.test_access import World

AVOID_EN = "Avoid NE 42nd and Killingsworth"
AVOID_ES = "Eviten la NE 42 y Killingsworth"


def area_id(services: Services, name: str) -> int:
    with services.database.session() as session:
        area = find_area(session, name)
        assert area is not None
        return area.id


def second_cully_draft(services: Services) -> int:
    """A newly confirmed Cully incident's alert draft."""
    with services.database.session() as session:
        incident = Incident(
            code="M3Q8",
            state=IncidentState.CONFIRMED,
            area_id=area_id(services, "cully"),
            reporter_count=1,
        )
        session.add(incident)
        session.flush()
        incident_id = incident.id
    alert_id = draft_for_incident(services, incident_id)
    assert alert_id is not None
    return alert_id


def page_of(client: FlaskClient, alert_id: int) -> str:
    return client.get(f"/board/alerts/{alert_id}").get_data(as_text=True)


def revise(client: FlaskClient, alert_id: int, data: dict[str, object]):  # type: ignore[no-untyped-def]
    page = page_of(client, alert_id)
    return post_form(client, f"/board/alerts/{alert_id}/revise", data, page=page)


def test_a_draft_takes_the_adjacent_area_and_a_line_in_each_language(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    concordia = area_id(services, "concordia")
    add_many_subscribers(services, concordia, 6)  # a third of them read Spanish
    alert_id = second_cully_draft(services)
    page = page_of(dispatcher, alert_id)
    assert "Concordia (people: 6)" in page and 'name="area_id"' in page
    assert 'data-sms-rest="' in page and 'id="line_es-cost"' in page

    # A line in English only, with Spanish readers in the audience: refused, kept.
    refused = revise(dispatcher, alert_id, {"area_id": concordia, "line_en": AVOID_EN})
    assert refused.status_code == 400
    again = refused.get_data(as_text=True)
    assert "Write the Spanish note too" in again and f'value="{AVOID_EN}"' in again

    done = revise(
        dispatcher, alert_id, {"area_id": concordia, "line_en": AVOID_EN, "line_es": AVOID_ES}
    )
    assert done.status_code == 303
    with services.database.session() as session:
        alert = session.get_one(Alert, alert_id)
        texts = broadcast.texts_of(services.cipher, alert)
        assert sorted(a.name for a in alert.areas) == ["Concordia", "Cully"]
        assert broadcast.audience_size(session, alert) == 3 + 6
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "alert.revised")
        ).all()
    assert texts["en"].startswith("ALERT: immigration agents confirmed in Cully, Concordia")
    assert f"{AVOID_EN}." in texts["en"] and f"{AVOID_ES}." in texts["es"]
    assert AVOID_EN not in texts["es"]
    assert len(audit) == 1 and "Killingsworth" not in str(audit[0].details)
    page = page_of(dispatcher, alert_id)
    assert f'value="{AVOID_ES}"' in page  # a second revision starts from what was written
    assert "Send to 9 people in Cully, Concordia" in page


def test_a_revision_withdraws_the_approvals_given_for_the_old_words(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    alert_id = second_cully_draft(services)
    with services.database.session() as session:
        staff_id = session.scalar(select(func.min(StaffUser.id)))  # the signed-in dispatcher
        session.add(AlertApproval(alert_id=alert_id, staff_user_id=staff_id, approved_at=utcnow()))
    assert revise(dispatcher, alert_id, {"line_en": AVOID_EN}).status_code == 303
    with services.database.session() as session:
        left = session.scalar(
            select(func.count())
            .select_from(AlertApproval)
            .where(AlertApproval.alert_id == alert_id)
        )
    assert left == 0


def test_only_an_adjacent_area_can_be_added(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    alert_id = second_cully_draft(services)
    far = area_id(services, "lents")
    response = revise(dispatcher, alert_id, {"area_id": far})
    assert response.status_code == 400
    assert "Only areas next to the incident" in response.get_data(as_text=True)


def test_the_own_area_is_handed_over_before_the_adjacent_area_is_sent(
    services: Services, world: World
) -> None:
    concordia = area_id(services, "concordia")
    add_many_subscribers(services, concordia, 25)
    alert_id = second_cully_draft(services)
    with services.database.session() as session:
        session.execute(alert_areas.insert(), [{"alert_id": alert_id, "area_id": concordia}])
    approval = approve_alert(services, alert_id)
    with services.database.session() as session:
        cully_batches = set(
            session.scalars(
                select(Delivery.batch).where(
                    Delivery.alert_id == alert_id,
                    Delivery.subscriber_id.in_(world_subscriber_ids(services)),
                )
            )
        )
        held = session.get_one(Alert, alert_id).held_from_batch
    # Cully's three people fill batch 0; Concordia's 25 come after and wait.
    assert cully_batches == {0} and held == 1
    assert approval.enqueue_now == range(1) and approval.batches > 1
    with services.database.session() as session:
        assert broadcast.release_held(session, alert_id) == range(0)  # Cully not sent yet
        waiting = broadcast.waiting_batches(session, utcnow() + timedelta(minutes=1))
        assert {batch for alert, batch in waiting if alert == alert_id} == {0}

    jobs.send_batch(alert_id, 0)  # hands Cully over, then releases (and enqueues) the rest

    with services.database.session() as session:
        assert session.get_one(Alert, alert_id).held_from_batch is None
    for batch in range(1, approval.batches):
        jobs.send_batch(alert_id, batch)
    with services.database.session() as session:
        sent = session.scalar(
            select(func.count()).where(
                Delivery.alert_id == alert_id, Delivery.status == DeliveryStatus.SENT
            )
        )
    assert sent == 3 + 25


def world_subscriber_ids(services: Services) -> list[int]:
    cully = area_id(services, "cully")
    with services.database.session() as session:
        return list(
            session.scalars(select(Subscription.subscriber_id).where(Subscription.area_id == cully))
        )


def follow_up(client: FlaskClient, world: World, data: dict[str, object]):  # type: ignore[no-untyped-def]
    page = page_of(client, world.alert_id)
    return post_form(client, f"/board/alerts/{world.alert_id}/follow-up", data, page=page)


def newest_texts(services: Services) -> dict[str, str]:
    with services.database.session() as session:
        alert = session.scalars(select(Alert).order_by(Alert.id.desc()).limit(1)).one()
        return broadcast.texts_of(services.cipher, alert)


def test_a_correction_names_the_right_area_with_its_reason(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    concordia = area_id(services, "concordia")
    wrong = follow_up(
        dispatcher, world, {"kind": "correction", "correcting": "area", "right_area_id": ""}
    )
    assert wrong.status_code == 400
    assert "Choose the area it really was in" in wrong.get_data(as_text=True)
    done = follow_up(
        dispatcher,
        world,
        {
            "kind": "correction",
            "correcting": "area",
            "right_area_id": concordia,
            "note_en": "The store is across the line",
        },
    )
    assert done.status_code == 303
    texts = newest_texts(services)
    assert (
        "named Cully by mistake: it was in Concordia. The store is across the line."
        in (texts["en"])
    )


def test_a_correction_gives_the_right_time(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    tz = ZoneInfo(services.settings.timezone)
    seen = (utcnow() - timedelta(minutes=40)).replace(second=0, microsecond=0)
    clock = seen.astimezone(tz).strftime("%H:%M")
    assert (
        follow_up(dispatcher, world, {"kind": "correction", "correcting": "time"}).status_code
        == 400
    )
    done = follow_up(
        dispatcher, world, {"kind": "correction", "correcting": "time", "right_time": clock}
    )
    assert done.status_code == 303
    texts = newest_texts(services)
    assert texts["en"].startswith("CORRECTION: the alert for Cully had the wrong time")
    assert f"at {local_time(Language.EN, seen, tz)}." in texts["en"]
    assert f"a las {local_time(Language.ES, seen, tz)}." in texts["es"]
