"""Texts that are true: every alert and follow-up is signed with ORG_NAME, and an
all-clear names the last time anyone reported agents, not the moment it was typed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import update

from dispatch import alerts
from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.models import AlertKind, Incident, Report, ReportChannel, utcnow
from tests.dispatch.test_alerts import alert_row, confirmed_incident, make_area


def test_alerts_and_follow_ups_are_signed_and_the_all_clear_says_when_agents_were_seen(
    services: Services,
) -> None:
    services.settings = replace(
        services.settings, org_name="PDX Rapid Response", org_name_es="Red PDX", timezone="UTC"
    )
    cully = make_area(services, "cully")
    incident_id = confirmed_incident(services, cully)
    seen = utcnow().replace(hour=9, minute=42, second=0, microsecond=0) - timedelta(days=1)
    with services.database.session() as session:
        session.add(
            Report(
                code="R9K9", incident_id=incident_id, channel=ReportChannel.SMS, received_at=seen
            )
        )
        session.execute(
            update(Incident).where(Incident.id == incident_id).values(state_changed_at=seen)
        )
    alert_id = alerts.draft_for_incident(services, incident_id)
    assert alert_id is not None
    alerts.write_ledger(services, alert_id)
    all_clear = alerts.draft_follow_up(services, alert_id, AlertKind.ALL_CLEAR)
    for row_id in (alert_id, all_clear):
        texts = broadcast.texts_of(services.cipher, alert_row(services, row_id))
        assert texts["en"].endswith(" -PDX Rapid Response") and texts["es"].endswith(" -Red PDX")
    texts = broadcast.texts_of(services.cipher, alert_row(services, all_clear))
    assert texts["en"].startswith("ALL CLEAR: no agents reported in Cully since 9:42 AM.")
    assert texts["es"].startswith(
        "FIN DE ALERTA: no se han reportado agentes en Cully desde las 09:42."
    )
    assert "open the door" not in texts["en"] and "No abra" not in texts["es"]
