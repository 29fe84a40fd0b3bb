"""The words of the alerts, as a coordinator sets them on the web, per language.

The catalog (``rapidresponse/locale``) stays the default; a coordinator's wording of one
message in one language overrides it from the next alert drafted on. A wording must keep
the catalog's placeholders ({areas}, {time}, {note}); it is checked, and shown, by what it
would cost: the composed text with a long area name and the signature, its encoding and
segments. A wording that would make the text UCS-2 or one segment longer says so before it
is saved (and still may be: the coordinator decides).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from rapidresponse import audit
from rapidresponse.composer import Correcting, Preview, compose, preview, signatures
from rapidresponse.messages import catalog, placeholders
from rapidresponse.models import AlertKind, Language, MessageWording, utcnow
from rapidresponse.refusals import N_, Refused

KINDS = (AlertKind.ALERT, AlertKind.UPDATE, AlertKind.ALL_CLEAR, AlertKind.CORRECTION)
# Every text a kind can take: a correction says false alarm, wrong area or wrong time.
VARIANTS: tuple[tuple[AlertKind, Correcting | None], ...] = (
    *((kind, None) for kind in KINDS if kind is not AlertKind.CORRECTION),
    *((AlertKind.CORRECTION, correcting) for correcting in Correcting),
)
# The hotline's know-your-rights answers (RIGHTS, RIGHTS HOME...): one segment each.
RIGHTS_REPLIES = tuple(
    f"sms.rights{suffix}" for suffix in ("", "_home", "_car", "_work", "_street", "_more")
)
# What the public know-your-rights page (/rights) shows, and the organisation's trainings
# there (free text, not an SMS).
RIGHTS_TOPIC_PAGES = RIGHTS_REPLIES[1:-1]  # the topics: not the list of them, not the link
TRAININGS = "rights.trainings"
EDITABLE = (
    *(f"alert.{kind.value}" for kind in KINDS if kind is not AlertKind.CORRECTION),
    *(correcting.message_id for correcting in Correcting),
    "alert.rights_line",
    "alert.keyword",
    *RIGHTS_REPLIES,
    TRAININGS,
)
MAX_WORDING_CHARS = 300
# The worst case a wording is measured with: a long area name and the longest clock time.
SAMPLE_AREA = "Powellhurst-Gilbert North"
SAMPLE_TIME = datetime(2026, 11, 24, 20, 5, tzinfo=UTC)  # 12:05 PM in Portland
SAMPLE_NOTE = "Agents left toward SE Foster and 82nd"
SEGMENT_BUDGET = {AlertKind.UPDATE: 2}  # the others: one


class WordingRefused(Refused):
    """The wording cannot be used; the message says why."""


Wordings = Mapping[str, Mapping[str, str]]  # language value -> message id -> template


@dataclass(frozen=True)
class Measured:
    """A kind's text in one language as it would go out, and whether it is over budget."""

    kind: AlertKind
    preview: Preview
    budget: int
    correcting: Correcting | None = None

    @property
    def message_id(self) -> str:
        return self.correcting.message_id if self.correcting else f"alert.{self.kind.value}"

    @property
    def over_budget(self) -> bool:
        return self.preview.segments > self.budget

    @property
    def ucs2(self) -> bool:
        return self.preview.encoding != "GSM-7"


def wording_of(session: Session, language: Language, message_id: str) -> str | None:
    """A coordinator's wording of one message in one language, or None (the catalog's)."""
    return session.scalar(
        select(MessageWording.text).where(
            MessageWording.language == language, MessageWording.message_id == message_id
        )
    )


def wordings(session: Session) -> dict[str, dict[str, str]]:
    """The coordinators' wordings: language value -> message id -> template."""
    found: dict[str, dict[str, str]] = {}
    for row in session.scalars(select(MessageWording)):
        found.setdefault(row.language.value, {})[row.message_id] = row.text
    return found


def check(language: Language, message_id: str, text: str) -> str:
    """The wording, tidied, or WordingRefused (unknown message, placeholders changed,
    empty or too long)."""
    if message_id not in EDITABLE:
        raise WordingRefused(N_("That message cannot be reworded here."))
    cleaned = " ".join(text.split())
    if not cleaned or len(cleaned) > MAX_WORDING_CHARS:
        raise WordingRefused(N_("A wording is 1 to %(most)d characters."), most=MAX_WORDING_CHARS)
    default = catalog(language).get(message_id) or catalog(Language.EN)[message_id]
    try:
        wanted, given = placeholders(default), placeholders(cleaned)
    except ValueError:  # an unmatched brace
        raise WordingRefused(N_("Braces are only for the placeholders, such as {areas}.")) from None
    if wanted != given:
        raise WordingRefused(
            N_("Keep the placeholders of the default text, and only those: %(count)d of them."),
            count=len(wanted),
        )
    return cleaned


def save(session: Session, language: Language, message_id: str, text: str, staff_id: int) -> None:
    """Store a wording (an empty one goes back to the default), audited without the text."""
    session.execute(
        delete(MessageWording).where(
            MessageWording.language == language, MessageWording.message_id == message_id
        )
    )
    if text.strip():
        session.add(
            MessageWording(
                language=language,
                message_id=message_id,
                text=check(language, message_id, text),
                updated_by_id=staff_id,
                updated_at=utcnow(),
            )
        )
    elif message_id not in EDITABLE:
        raise WordingRefused(N_("That message cannot be reworded here."))
    audit.record(
        session,
        actor=f"staff:{staff_id}",
        action="wording.changed" if text.strip() else "wording.reset",
        subject=f"wording:{language.value}",
        details={"message": message_id},
    )


@dataclass(frozen=True)
class MeasuredReply:
    """A know-your-rights answer as the hotline would send it: one segment, or it says so."""

    message_id: str
    preview: Preview

    @property
    def over_budget(self) -> bool:
        return self.preview.segments > 1

    @property
    def ucs2(self) -> bool:
        return self.preview.encoding != "GSM-7"


def measure_replies(
    language: Language, wording: Mapping[str, str], rights_url: str
) -> list[MeasuredReply]:
    """Each RIGHTS answer in ``language`` with ``wording``, as the hotline sends it."""
    measured = []
    for message_id in RIGHTS_REPLIES:
        template = wording.get(message_id) or catalog(language).get(message_id)
        template = template or catalog(Language.EN)[message_id]
        shown = template.format(url=rights_url)
        measured.append(MeasuredReply(message_id, preview(language, shown)))
    return measured


def measure(
    language: Language, wording: Mapping[str, str], org_name: str, tz: ZoneInfo
) -> list[Measured]:
    """Every kind in ``language`` with ``wording`` (message id -> template), as sent."""
    signature = signatures(org_name, org_name)[language.value]
    return [
        Measured(
            kind,
            preview(
                language,
                compose(
                    kind,
                    language,
                    areas=[SAMPLE_AREA],
                    at=SAMPLE_TIME,
                    tz=tz,
                    note=SAMPLE_NOTE if kind is AlertKind.UPDATE else None,
                    signature=signature,
                    wording=wording,
                    correcting=correcting or Correcting.FALSE_ALARM,
                    place=SAMPLE_AREA,
                ),
            ),
            SEGMENT_BUDGET.get(kind, 1),
            correcting,
        )
        for kind, correcting in VARIANTS
    ]
