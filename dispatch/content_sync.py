"""WhatsApp templates read from Twilio's Content API, so a coordinator need not copy
Content SIDs and review statuses by hand (``/whatsapp/templates``, "Sync from Twilio").

A template is ours when its name (the Content resource's friendly name, or the name it
was submitted to WhatsApp under) is ``rapidresponse_<kind>_<language>``, such as
``rapidresponse_alert_es``. Meta's review maps onto ours: approved is used; received,
pending or not yet submitted waits; rejected, paused or disabled is not used. An approved
template of any category but Utility is not used either: Meta blocks marketing templates
to US numbers, and an alert must never depend on one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from rapidresponse import whatsapp
from rapidresponse.config import Settings
from rapidresponse.db import Database
from rapidresponse.models import AlertKind, Language, TemplateStatus

CONTENT_API = "https://content.twilio.com"
NAMES = {
    f"rapidresponse_{kind.value}_{language.value}": (kind, language)
    for kind in AlertKind
    for language in Language
}
NOT_USED = frozenset({"rejected", "paused", "disabled"})
UTILITY = "UTILITY"


class SyncFailed(Exception):
    """Twilio could not be asked (credentials, network); nothing was changed."""


@dataclass(frozen=True)
class Synced:
    found: int  # templates named for a kind and language of ours
    not_utility: int  # approved, but not Utility: not used


def content_api_url(settings: Settings) -> str:
    """Twilio's Content API; a local Twilio-compatible server (TWILIO_API_URL) serves both."""
    if settings.twilio_api_url.rstrip("/") == "https://api.twilio.com":
        return CONTENT_API
    return settings.twilio_api_url


def sync_templates(settings: Settings, database: Database, staff_id: int | None) -> Synced:
    """Read every Content template with its WhatsApp approval; save ours.

    Raises:
        SyncFailed: no Twilio credentials, or Twilio refused or could not be reached.
    """
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        raise SyncFailed("no Twilio credentials")
    client = Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        http_client=TwilioHttpClient(timeout=10),
    )
    client.content.base_url = content_api_url(settings)
    try:
        contents = client.content.v1.content_and_approvals.list(page_size=50, limit=1000)
    except (TwilioException, OSError) as error:
        raise SyncFailed(type(error).__name__) from None
    found = not_utility = 0
    # Several templates may carry one name (an old rejected one, a new approved one): the
    # approved, then the newest, is applied last, so it is the one kept.
    contents = sorted(contents, key=_precedence)
    with database.session() as session:
        for content in contents:
            approval: dict[str, Any] = dict(content.approval_requests or {})
            key = NAMES.get(content.friendly_name or "") or NAMES.get(approval.get("name") or "")
            if key is None or not content.sid or not whatsapp.CONTENT_SID.fullmatch(content.sid):
                continue
            status = _status(approval)
            if status is TemplateStatus.APPROVED and approval.get("category") != UTILITY:
                status, not_utility = TemplateStatus.REJECTED, not_utility + 1
            whatsapp.save_template(
                session,
                kind=key[0],
                language=key[1],
                content_sid=content.sid,
                variables=["text"],
                status=status,
                staff_id=staff_id,
            )
            found += 1
    return Synced(found, not_utility)


def _status(approval: dict[str, Any]) -> TemplateStatus:
    said = str(approval.get("status") or "").lower()
    if said == "approved":
        return TemplateStatus.APPROVED
    if said in NOT_USED:
        return TemplateStatus.REJECTED
    return TemplateStatus.PENDING


def _precedence(content: Any) -> tuple[bool, str]:
    approval = dict(content.approval_requests or {})
    updated = content.date_updated.isoformat() if content.date_updated else ""
    return (str(approval.get("status") or "").lower() == "approved", updated)
