"""The text of an alert and its follow-ups, in every language, kept to one SMS segment.

An alert says what was confirmed, where (area names only: never a person's address, a
name or a plate), when (local time), one know-your-rights line and the RIGHTS keyword
(DERECHOS in Spanish). Follow-ups are built the same way: ``update`` carries a short
dispatcher note, ``all_clear`` says the agents have left, ``correction`` says the alert was
a false alarm. Every text comes from the gettext catalogs (ids ``alert.<kind>``,
``alert.rights_line``, ``alert.keyword``), so organizers can reword them.

A message is the kind's template, then the rights line, then the keyword line. When that
does not fit one GSM-7 segment (160 characters), the composer lists fewer areas
("Cully, Foster-Powell +2"), then leaves out the rights line; the keyword is never cut.
The final text is folded to GSM-7 (``gsm_fold``): one 'ó' or curly quote would otherwise
make the whole message UCS-2, 70 characters a segment instead of 160.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from rapidresponse import drills
from rapidresponse.messages import join_names, text
from rapidresponse.models import AlertKind, Language
from rapidresponse.refusals import N_, Refused
from rapidresponse.sms import GSM7_BASIC, GSM7_EXTENDED, is_gsm7, segment

NOTE_MAX_CHARS = 80
# The kinds that tell people what to do while agents are around.
WITH_RIGHTS_LINE = frozenset({AlertKind.ALERT, AlertKind.UPDATE})
# The kinds a dispatcher may add a line of their own to (an update must have one).
TAKES_A_NOTE = frozenset({AlertKind.ALERT, AlertKind.UPDATE, AlertKind.CORRECTION})


class Correcting(str, enum.Enum):
    """What a correction corrects: the whole alert, or where, or when."""

    FALSE_ALARM = "false_alarm"
    AREA = "area"
    TIME = "time"

    @property
    def message_id(self) -> str:
        return (
            "alert.correction"
            if self is Correcting.FALSE_ALARM
            else f"alert.correction_{self.value}"
        )


# Characters outside GSM-7 with a GSM-7 spelling that NFKD does not give.
_REPLACEMENTS: Mapping[str, str] = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2035`\u00b4", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u2036«»", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe58\ufe63\uff0d", "-"),
    "\u2026": "...",
    "\u2022": "-",
    "\u00b7": ".",
    "\t": " ",
    "\u2028": "\n",
    "\u2029": "\n",
    "\u0153": "oe",
    "\u0152": "OE",
}
# Invisible characters that carry nothing in an SMS (the ZWJ of emoji sequences is kept).
_DROPPED = frozenset("\u00ad\u200b\u2060\ufeff")


def _is_gsm7_char(char: str) -> bool:
    return char in GSM7_BASIC or char in GSM7_EXTENDED


def _fold_char(char: str, *, expand: bool) -> str:
    """One character's GSM-7 spelling, or the character itself when it has none.

    With ``expand`` false, only one-for-one spellings are used (a spelling longer than the
    character would make a text that stays UCS-2 longer, never cheaper).
    """
    if _is_gsm7_char(char):
        return char
    if char in _DROPPED:
        return ""
    if unicodedata.category(char) == "Zs":
        return " "
    spelled = _REPLACEMENTS.get(char)
    if spelled is None:
        decomposed = unicodedata.normalize("NFKD", char)
        spelled = "".join(c for c in decomposed if not unicodedata.combining(c))
        if not spelled or not is_gsm7(spelled):
            return char
    return spelled if expand or len(spelled) <= 1 else char


def _fold_pass(text: str, *, expand: bool) -> str:
    out: list[str] = []
    for char in unicodedata.normalize("NFC", text):
        if unicodedata.combining(char) and out and out[-1] and _is_gsm7_char(out[-1][-1]):
            continue  # an accent on a letter whose accented form is not GSM-7: drop it
        out.append(_fold_char(char, expand=expand))
    return "".join(out)


def _fold_fully(text: str, *, expand: bool) -> str:
    # Folding can bring a base letter next to an accent that composes with it (o + ¨ → ö),
    # so repeat until nothing changes; each pass removes non-GSM-7 characters.
    for _ in range(8):
        folded = _fold_pass(text, expand=expand)
        if folded == text:
            break
        text = folded
    return text


def gsm_fold(text: str) -> str:
    """``text`` with each character outside GSM-7 replaced by a GSM-7 spelling, if any.

    á í ó ú → a i o u (é ñ ü à are GSM-7 and stay), curly quotes → straight, dashes → '-',
    '…' → '...', unusual spaces → ' ', other accented letters → their base letter.
    Characters with no GSM-7 spelling (emoji, CJK) stay. Idempotent, and never costs more
    segments than ``text``: when some character cannot be folded (so the text stays UCS-2)
    or the longer spellings would add a segment, only the one-for-one spellings are used.
    """
    full = _fold_fully(text, expand=True)
    if is_gsm7(full) and segment(full).segments <= segment(text).segments:
        return full
    return _fold_fully(text, expand=False)


@dataclass(frozen=True)
class Preview:
    """What one language's text costs to send."""

    language: Language
    text: str
    encoding: str
    segments: int
    units: int


def preview(language: Language, text: str) -> Preview:
    cost = segment(text)
    return Preview(language, text, cost.encoding, cost.segments, cost.units)


def previews(texts: Mapping[str, str]) -> list[Preview]:
    """A preview per entry of ``texts`` (language value → text), as ``compose_all`` gives."""
    return [preview(Language(language), body) for language, body in texts.items()]


class NoteRefused(Refused):
    """A dispatcher note that may not go out. The message never quotes the note."""


# Seven digits or more, whatever spaces, dashes, dots or parentheses lie between them.
_PHONE = re.compile(r"\d(?:[\s\-.()]*\d){6,}")
# A house number: 3-6 digits, then a compass direction or a street name and suffix.
_HOUSE_NUMBER = re.compile(
    r"(?<![-\w])\d{3,6}\s+(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\b"
    r"|(?:[A-Za-z]+\s+){1,2}(?:St|Street|Ave|Avenue|Blvd|Boulevard|Rd|Road|Dr|Drive|Ct"
    r"|Court|Ln|Lane|Way|Pl|Place|Ter|Terrace)\b)",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
# Letters-and-digits words that are not plates: 122nd, 2pm, 10min, 15mins, 2hrs.
_NOT_A_PLATE = re.compile(r"\d+(?:st|nd|rd|th|am|pm|min|mins|hr|hrs)", re.IGNORECASE)
# Road names written like plates: I-205, OR-217, US-26, HWY-99E.
_ROAD = re.compile(r"(?:I|US|OR|WA|SR|RTE|HWY)-\d+[A-Za-z]?", re.IGNORECASE)
# Capitals next to a number that do not make a plate ("SE 122", "HWY 217", "ETA 100").
_NOT_PLATE_WORDS = frozenset(
    {"N", "S", "E", "W", "NE", "NW", "SE", "SW", "US", "SR", "HWY", "RTE", "AM", "PM"}
    | {"ICE", "CBP", "DHS", "HSI", "FBI", "ETA", "SUV", "MAX", "BUS"}
)
_CAPITALS_OR_DIGITS = re.compile(r"[A-Z0-9]{2,4}")


def _mixes_letters_and_digits(word: str) -> bool:
    return any(c.isalpha() for c in word) and any(c.isdigit() for c in word)


def _looks_like_plate(token: str, previous: str | None) -> bool:
    """Whether ``token`` (or ``previous`` and ``token``, one space apart) looks like a plate.

    One word: "ABC1234", "7XYZ123", "abc-1234". Two: "ABC 1234", "123 XYZ", "5AB 123".
    """
    compact = token.replace("-", "")
    if _mixes_letters_and_digits(compact) and 5 <= len(compact) <= 8:
        return not (_NOT_A_PLATE.fullmatch(compact) or _ROAD.fullmatch(token))
    if previous is None:
        return False
    pair = (previous, token)
    return (
        5 <= len(previous + token) <= 8
        and _mixes_letters_and_digits(previous + token)
        and all(_CAPITALS_OR_DIGITS.fullmatch(word) for word in pair)
        and not any(word in _NOT_PLATE_WORDS or _NOT_A_PLATE.fullmatch(word) for word in pair)
        and not any(word.isdigit() and len(word) < 3 for word in pair)
    )


def clean_note(note: str) -> str:
    """A dispatcher's note, tidied and folded to GSM-7, or NoteRefused.

    Refused: an empty note, one longer than NOTE_MAX_CHARS (in GSM-7 septets: [ ] { } € and
    a few others count double), one with characters SMS can only send as UCS-2 (emoji: they
    would triple the cost of every alert), and one that looks like it names a person's
    phone (seven digits or more), house number (3-6 digits then a direction or street) or
    licence plate (a 5-8 character word of letters and digits, or "ABC 1234"). Times
    ("14:05", "2:30pm"), ordinals ("SE 122nd") and highways ("I-205") are fine.
    """
    cleaned = gsm_fold(" ".join(note.split()))
    if not cleaned:
        raise NoteRefused(N_("The note is empty: write what changed, in a few words."))
    if not is_gsm7(cleaned):
        raise NoteRefused(
            N_(
                "The note has an emoji or a symbol that SMS cannot send as plain text; "
                "use letters, digits and simple punctuation."
            )
        )
    if segment(cleaned).units > NOTE_MAX_CHARS:
        raise NoteRefused(
            N_("The note is too long: at most %(most)d characters."), most=NOTE_MAX_CHARS
        )
    if _PHONE.search(cleaned):
        raise NoteRefused(N_("The note looks like it has a phone number; leave numbers out."))
    if _HOUSE_NUMBER.search(cleaned):
        raise NoteRefused(
            N_("The note looks like it has a street address; name cross streets or the block.")
        )
    previous: str | None = None
    previous_end = -1
    for match in _TOKEN.finditer(cleaned):
        token = match.group()
        # Two words make a plate only with one space between them.
        beside = previous if cleaned[previous_end : match.start()] == " " else None
        if _looks_like_plate(token, beside):
            raise NoteRefused(N_("The note looks like it has a licence plate; leave it out."))
        previous, previous_end = token, match.end()
    return cleaned


def local_time(language: Language, at: datetime, tz: ZoneInfo) -> str:
    """``at`` (aware) as a clock time in ``tz``: "2:05 PM" in English, "14:05" in Spanish."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the time of an alert must be timezone-aware (UTC)")
    local = at.astimezone(tz)
    if language is Language.EN:
        hour = local.hour % 12 or 12
        return f"{hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"
    return f"{local.hour:02d}:{local.minute:02d}"


def last_clock_time(typed: str, tz: ZoneInfo, now: datetime) -> datetime | None:
    """A clock time as a dispatcher types it ("14:05", "9:30") as the latest such moment
    up to ``now`` (aware), in UTC; None when it is not a clock time. The inverse of
    local_time, for a correction's right time: it is always in the past."""
    try:
        clock = time.fromisoformat(_two_digit_hour(typed.strip()))
    except ValueError:
        return None
    local_now = now.astimezone(tz)
    moment = datetime.combine(local_now.date(), clock.replace(tzinfo=None), tzinfo=tz)
    if moment > local_now:
        moment -= timedelta(days=1)
    return moment.astimezone(UTC)


def _two_digit_hour(typed: str) -> str:
    # fromisoformat wants "09:30"; people type "9:30".
    return f"0{typed}" if re.fullmatch(r"\d:\d\d", typed) else typed


def _area_list(names: Sequence[str], shown: int) -> str:
    listed = join_names(list(names[:shown]))
    hidden = len(names) - shown
    return f"{listed} +{hidden}" if hidden else listed


def _as_sentence(note: str) -> str:
    return note if note.endswith((".", "!", "?")) else note + "."


def compose(
    kind: AlertKind,
    language: Language,
    *,
    areas: Sequence[str],
    at: datetime,
    tz: ZoneInfo,
    note: str | None = None,
    signature: str = "",
    wording: Mapping[str, str] | None = None,
    correcting: Correcting = Correcting.FALSE_ALARM,
    place: str | None = None,
    drill: bool = False,
) -> str:
    """The text of a ``kind`` message in ``language``, folded to GSM-7.

    ``areas`` are display names (the first ones are kept when the list must be shortened);
    ``at`` is an aware datetime (the time of the sighting, of the update, of the all-clear,
    or of the alert a correction withdraws), shown as local time in ``tz``.

    An ``update`` needs a note; an alert may carry one line of the dispatcher's own ("Avoid
    NE 42nd and Killingsworth") and a correction its reason: each goes through
    ``clean_note`` (so it may raise NoteRefused) and is ended with a full stop. A note to an
    all-clear is a ValueError, as are an announcement (written by hand, not from
    templates), no areas and a naive ``at``.

    A correction says the alert was a false alarm, or (``correcting``) that its area was
    wrong (``place`` names the right one; ``areas`` are the alert's) or its time (``at`` is
    then the right time).

    The message is the kind's template, the know-your-rights line (an alert and an update
    only: "do not open the door" would contradict an all-clear or a false alarm), the
    keyword line and the ``signature`` ("-Rapid Response", from ORG_NAME: how a subscriber
    tells a real alert from a forged one). Past one segment, fewer areas are listed
    ("Cully, Foster-Powell +2"), down to one; then the rights line is left out, and as many
    areas as then fit are listed again. The keyword and the signature are never cut: if
    even one area and they do not fit, the text is returned longer than one segment, and
    its preview says so.

    A ``drill`` message starts with the drill word ("DRILL: ", "SIMULACRO: "), counted
    in the segment like the rest.
    """
    if kind is AlertKind.ANNOUNCEMENT:
        raise ValueError("announcements are written by hand, not composed from templates")
    names = list(dict.fromkeys(" ".join(area.split()) for area in areas))
    if not names or not all(names):
        raise ValueError("an alert needs at least one area, and area names are not empty")
    params = {"time": local_time(language, at, tz)}
    line = ""
    if kind is AlertKind.UPDATE:
        if note is None:
            raise NoteRefused(N_("An update needs a note: write what changed, in a few words."))
        params["note"] = _as_sentence(clean_note(note))
    elif note is not None and kind not in TAKES_A_NOTE:
        raise ValueError(f"a {kind.value} message takes no note")
    elif note is not None:
        line = _as_sentence(clean_note(note))
    message_id = f"alert.{kind.value}"
    if kind is AlertKind.CORRECTION:
        message_id = correcting.message_id
        if correcting is Correcting.AREA:
            if not place or not place.strip():
                raise ValueError("a correction of the area names the right one")
            params["place"] = " ".join(place.split())

    def say(message_id: str, **params: str) -> str:
        # A coordinator's wording (rapidresponse.wording) before the catalog's.
        chosen = (wording or {}).get(message_id)
        return chosen.format(**params) if chosen else text(language, message_id, **params)

    rights = say("alert.rights_line")
    keyword = say("alert.keyword")
    ending = (keyword, signature) if signature else (keyword,)
    tails = [(rights, *ending), ending] if kind in WITH_RIGHTS_LINE else [ending]
    message = ""
    for tail in tails:
        for shown in range(len(names), 0, -1):
            body = say(message_id, areas=_area_list(names, shown), **params)
            message = gsm_fold(" ".join(part for part in (body, line, *tail) if part))
            if drill:
                message = drills.mark(message, language)
            if segment(message).segments == 1:
                return message
    return message


def compose_all(
    kind: AlertKind,
    *,
    areas: Sequence[str],
    at: datetime,
    tz: ZoneInfo,
    note: str | None = None,
    notes: Mapping[str, str] | None = None,
    signatures: Mapping[str, str] | None = None,
    wordings: Mapping[str, Mapping[str, str]] | None = None,
    correcting: Correcting = Correcting.FALSE_ALARM,
    place: str | None = None,
    drill: bool = False,
) -> dict[str, str]:
    """``compose`` for every language: language value ("en", "es") → text.

    A note (an update's, an alert's line, a correction's reason) is the dispatcher's own
    words: ``notes`` gives one per language (language value → note; a language missing
    there gets none), each checked by ``clean_note``; ``note`` alone goes out as written
    in every language (the command line, scripts).
    """
    return {
        language.value: compose(
            kind,
            language,
            areas=areas,
            at=at,
            tz=tz,
            note=notes.get(language.value) if notes is not None else note,
            signature=(signatures or {}).get(language.value, ""),
            wording=(wordings or {}).get(language.value),
            correcting=correcting,
            place=place,
            drill=drill,
        )
        for language in Language
    }


def signatures(org_name: str, org_name_es: str) -> dict[str, str]:
    """What each language's texts end with: "-Rapid Response"."""
    return {Language.EN.value: f"-{org_name}", Language.ES.value: f"-{org_name_es}"}


# A note missing in a language that has readers: said in that language's own words.
MISSING_NOTE = {
    Language.EN.value: N_(
        "Write the English note too: it also goes to readers of English (%(count)d)."
    ),
    Language.ES.value: N_(
        "Write the Spanish note too: it also goes to readers of Spanish (%(count)d)."
    ),
}


def notes_for_readers(
    notes: Mapping[str, str], readers: Mapping[str, int], *, required: bool = True
) -> dict[str, str]:
    """One note per language, as a dispatcher typed them (blank: not written).

    A language with readers needs its own note (NoteRefused otherwise: a Spanish reader
    must not get the English words); one nobody reads takes another language's note.
    Nothing written at all is refused when ``required`` (an update), else it means no
    note (an alert's optional line, a correction's reason): {}.
    """
    written = {lang: " ".join(text.split()) for lang, text in notes.items() if text.strip()}
    if not written and not required:
        return {}
    if not written:
        raise NoteRefused(N_("An update needs a note: write what changed, in a few words."))
    chosen: dict[str, str] = {}
    for language in Language:
        if language.value in written:
            chosen[language.value] = written[language.value]
        elif readers.get(language.value, 0):
            raise NoteRefused(MISSING_NOTE[language.value], count=readers[language.value])
        else:
            chosen[language.value] = next(iter(written.values()))
    return chosen
