"""The alert composer: GSM-7 folding, dispatcher notes, and one-segment alerts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapidresponse.composer import (
    NOTE_MAX_CHARS,
    TAKES_A_NOTE,
    Correcting,
    NoteRefused,
    Preview,
    clean_note,
    compose,
    compose_all,
    gsm_fold,
    last_clock_time,
    local_time,
    preview,
    previews,
    signatures,
)
from rapidresponse.models import AlertKind, Language
from rapidresponse.sms import is_gsm7, segment

PORTLAND = ZoneInfo("America/Los_Angeles")
# 20:05 UTC is 12:05 PM in Portland in November: the longest English clock time.
NOON = datetime(2026, 11, 24, 20, 5, tzinfo=UTC)
LONG_AREA = "Powellhurst-Gilbert North"  # a realistic long name: 25 characters
NOTE = "Agents left toward SE Foster and 82nd; two vans still parked by the school lot"
KINDS = (AlertKind.ALERT, AlertKind.UPDATE, AlertKind.ALL_CLEAR, AlertKind.CORRECTION)
KEYWORD = {Language.EN: "RIGHTS", Language.ES: "DERECHOS"}
KEYWORD_LINE = {
    Language.EN: "Text RIGHTS to know your rights.",
    Language.ES: "Sus derechos: mande DERECHOS.",
}
RIGHTS_LINE = {
    Language.EN: "Do not open the door. You may stay silent.",
    Language.ES: "No abra la puerta. Puede guardar silencio.",
}


def note_for(kind: AlertKind) -> str | None:
    return NOTE if kind is AlertKind.UPDATE else None


# --- gsm_fold ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("información", "informacion"),
        ("Aquí está", "Aqui esta"),
        ("ÁÍÓÚ áíóú", "AIOU aiou"),
        ("é ñ ü à É Ñ Ü ¿ ¡", "é ñ ü à É Ñ Ü ¿ ¡"),  # GSM-7 already
        ("mañana en el jardín", "mañana en el jardin"),
        ("\u2018yes\u2019 \u201cno\u201d", "'yes' \"no\""),
        ("9\u20135 \u2014 now", "9-5 - now"),
        ("wait\u2026", "wait..."),
        ("a\u00a0b\u202fc\u2003d", "a b c d"),
        ("çâêîôû ëïÿ", "caeiou eiy"),
        ("Ì Ç", "I Ç"),
        ("e\u0301", "é"),  # decomposed é composes into the GSM-7 letter
        ("o\u0301", "o"),
        ("x\u0301", "x"),  # an accent with no composed form: the base letter
        ("soft\u00adhyphen", "softhyphen"),
        ("ﬁne", "fine"),
        ("plain text, 14:05", "plain text, 14:05"),
        ("", ""),
    ],
)
def test_gsm_fold(raw: str, folded: str) -> None:
    assert gsm_fold(raw) == folded


@pytest.mark.parametrize("raw", ["emoji \U0001f6a8", "中文", "👨\u200d👩\u200d👧", "½"])
def test_characters_without_a_gsm7_spelling_stay(raw: str) -> None:
    assert gsm_fold(raw) == raw


def test_folding_keeps_a_text_with_emoji_as_short_as_it_was() -> None:
    # It stays UCS-2 either way, so '…' → '...' would only make it longer.
    raw = "\U0001f6a8 á\u2026"
    assert gsm_fold(raw) == "\U0001f6a8 a\u2026"


def test_folding_never_adds_a_segment_even_when_the_spelling_is_longer() -> None:
    raw = "\u2026" * 70  # one UCS-2 segment; as '...' it would be 210 septets, two segments
    assert segment(gsm_fold(raw)).segments == 1


@given(st.text(max_size=300))
def test_gsm_fold_is_idempotent_and_never_costs_more(raw: str) -> None:
    once = gsm_fold(raw)
    assert gsm_fold(once) == once
    assert segment(once).segments <= segment(raw).segments


@given(st.text(alphabet=st.characters(max_codepoint=0x24F), max_size=200))
def test_latin_text_folds_to_gsm7_unless_a_letter_has_no_spelling(raw: str) -> None:
    # Latin-1 and Latin Extended: every letter but a few ('ł', 'đ', control characters)
    # has a GSM-7 spelling, and none is more than twice as long, so no segment is added.
    if all(is_gsm7(gsm_fold(char)) for char in raw):
        assert is_gsm7(gsm_fold(raw))


# --- clean_note -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("  Agents   left\ttoward Foster ", "Agents left toward Foster"),
        ("Two vans at SE 122nd and Division", "Two vans at SE 122nd and Division"),
        ("Still there at 14:05", "Still there at 14:05"),
        ("Left at 2:30pm, 10min ago", "Left at 2:30pm, 10min ago"),
        ("Still at 1:45PM near Lents Park", "Still at 1:45PM near Lents Park"),
        ("ETA 10 mins, 2 SUVs", "ETA 10 mins, 2 SUVs"),
        ("Ford F150, ICE 2 SUV", "Ford F150, ICE 2 SUV"),
        ("Seen on I-205 and OR-217 near Hwy 99E", "Seen on I-205 and OR-217 near Hwy 99E"),
        ("Siguen cerca de la calle 82", "Siguen cerca de la calle 82"),
        ("Se fueron. Están en el jardín", "Se fueron. Estan en el jardin"),
        ("\u201cleft\u201d \u2013 3 agents", '"left" - 3 agents'),
        ("Agents near the 4200 block of NE Going", "Agents near the 4200 block of NE Going"),
        ("Between 1030 PM and 11", "Between 1030 PM and 11"),
        ("x" * NOTE_MAX_CHARS, "x" * NOTE_MAX_CHARS),
    ],
)
def test_clean_note_accepts(raw: str, cleaned: str) -> None:
    assert clean_note(raw) == cleaned


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("x" * (NOTE_MAX_CHARS + 1), "too long"),
        ("[" * (NOTE_MAX_CHARS // 2 + 1), "too long"),  # two septets each
        ("Call 5035550123 for details", "phone number"),
        ("Call (503) 555-0123", "phone number"),
        ("call 503.555.0123", "phone number"),
        ("call 555 01 23", "phone number"),
        ("tel +1 503 555 0123", "phone number"),
        ("White van ABC1234", "licence plate"),
        ("plate 7XYZ123", "licence plate"),
        ("plate abc-1234", "licence plate"),
        ("plate ABC 1234", "licence plate"),
        ("plate 123 XYZ", "licence plate"),
        ("tag 5AB 123", "licence plate"),
        ("They took him from 4215 NE Going St", "street address"),
        ("van at 8124 SE Foster Rd", "street address"),
        ("van at 8124 Foster Rd", "street address"),
        ("Agents left \U0001f6a8", "emoji"),
    ],
)
def test_clean_note_refuses_without_quoting_the_note(raw: str, reason: str) -> None:
    with pytest.raises(NoteRefused, match=reason) as refused:
        clean_note(raw)
    message = str(refused.value)
    for digits in re.findall(r"\d+", raw):
        assert digits not in message.replace(str(NOTE_MAX_CHARS), "")
    for word in re.findall(r"[A-Za-z0-9]*\d[A-Za-z0-9]*", raw):
        assert word not in message


# --- compose ----------------------------------------------------------------------------


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_fits_one_gsm7_segment_with_a_long_area(
    kind: AlertKind, language: Language
) -> None:
    body = compose(kind, language, areas=[LONG_AREA], at=NOON, tz=PORTLAND, note=note_for(kind))
    cost = segment(body)
    assert (cost.encoding, cost.segments) == ("GSM-7", 1)
    assert LONG_AREA in body
    assert ("12:05 PM" if language is Language.EN else "12:05") in body
    assert KEYWORD[language] in body
    if kind is AlertKind.UPDATE:
        assert NOTE + "." in body
    elif kind is AlertKind.ALERT:
        # Room for the know-your-rights line with the longest area and time.
        assert RIGHTS_LINE[language] in body
    else:  # "do not open the door" would contradict an all-clear or a false alarm
        assert RIGHTS_LINE[language] not in body


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("kind", KINDS)
def test_a_short_alert_keeps_every_part(kind: AlertKind, language: Language) -> None:
    note = "Still there." if kind is AlertKind.UPDATE else None
    body = compose(kind, language, areas=["Cully"], at=NOON, tz=PORTLAND, note=note)
    assert "Cully" in body
    assert (RIGHTS_LINE[language] in body) is (kind in (AlertKind.ALERT, AlertKind.UPDATE))
    assert body.endswith(KEYWORD_LINE[language])


def test_the_english_alert() -> None:
    assert compose(AlertKind.ALERT, Language.EN, areas=["Cully"], at=NOON, tz=PORTLAND) == (
        "ALERT: immigration agents confirmed in Cully at 12:05 PM. "
        "Do not open the door. You may stay silent. Text RIGHTS to know your rights."
    )


def test_the_spanish_alert() -> None:
    assert compose(AlertKind.ALERT, Language.ES, areas=["Cully"], at=NOON, tz=PORTLAND) == (
        "ALERTA: agentes migratorios confirmados en Cully a las 12:05. "
        "No abra la puerta. Puede guardar silencio. Sus derechos: mande DERECHOS."
    )


def test_the_correction_names_the_false_alarm() -> None:
    texts = compose_all(AlertKind.CORRECTION, areas=["Lents"], at=NOON, tz=PORTLAND)
    assert texts["en"].startswith("CORRECTION: the alert for Lents at 12:05 PM was a false alarm.")
    assert texts["es"].startswith("FALSA ALARMA: la alerta de Lents de las 12:05 no era cierta.")


@pytest.mark.parametrize("language", list(Language))
def test_areas_are_shortened_with_a_count_before_the_rights_line_goes(
    language: Language,
) -> None:
    areas = ["Cully", "Foster-Powell", "Powellhurst-Gilbert", "Hosford-Abernethy", "Lents"]
    body = compose(AlertKind.ALERT, language, areas=areas, at=NOON, tz=PORTLAND)
    assert segment(body).segments == 1
    assert " Cully, Foster-Powell +3 " in body
    assert RIGHTS_LINE[language] in body


def test_every_area_is_listed_when_they_fit() -> None:
    areas = ["Cully", "Kenton", "Lents"]
    body = compose(AlertKind.ALERT, Language.EN, areas=areas, at=NOON, tz=PORTLAND)
    assert "in Cully, Kenton, Lents at" in body
    assert "+" not in body


@pytest.mark.parametrize("language", list(Language))
def test_the_rights_line_goes_when_fewer_areas_do_not_help(language: Language) -> None:
    area = "The Very Long Name Of A Neighborhood Association In Portland"  # 60 characters
    body = compose(AlertKind.ALERT, language, areas=[area], at=NOON, tz=PORTLAND)
    assert segment(body).segments == 1
    assert area in body
    assert RIGHTS_LINE[language] not in body
    assert body.endswith(KEYWORD_LINE[language])


def test_without_the_rights_line_as_many_areas_as_fit_are_listed_again() -> None:
    area = "The Very Long Name Of A Neighborhood Association In Portland"
    body = compose(AlertKind.ALERT, Language.EN, areas=[area, "Cully"], at=NOON, tz=PORTLAND)
    # With the rights line, only "<area> +1" would fit; without it, both areas do.
    assert body == "ALERT: immigration agents confirmed in " + area + ", Cully at 12:05 PM. " + (
        "Text RIGHTS to know your rights."
    )


def test_the_keyword_is_never_cut_even_past_one_segment() -> None:
    area = "N" * 120
    body = compose(AlertKind.ALERT, Language.ES, areas=[area, "Cully"], at=NOON, tz=PORTLAND)
    assert body.endswith("Sus derechos: mande DERECHOS.")
    assert f"{area} +1" in body
    assert segment(body).segments == 2


def test_area_names_are_folded_and_tidied() -> None:
    body = compose(
        AlertKind.ALERT, Language.ES, areas=["  Jardín\u00a0 Norte ", "Cully"], at=NOON, tz=PORTLAND
    )
    assert "en Jardin Norte, Cully a las" in body
    assert is_gsm7(body)


@pytest.mark.parametrize(
    ("at", "english", "spanish"),
    [
        (datetime(2026, 11, 24, 22, 5, tzinfo=UTC), "2:05 PM", "14:05"),  # PST, UTC-8
        (datetime(2026, 7, 4, 21, 5, tzinfo=UTC), "2:05 PM", "14:05"),  # PDT, UTC-7
        (datetime(2026, 11, 24, 8, 0, tzinfo=UTC), "12:00 AM", "00:00"),
        (datetime(2026, 11, 24, 17, 9, tzinfo=UTC), "9:09 AM", "09:09"),
        # The same instant, given in another offset.
        (datetime(2026, 11, 24, 17, 5, tzinfo=timezone(timedelta(hours=-5))), "2:05 PM", "14:05"),
    ],
)
def test_the_time_is_local(at: datetime, english: str, spanish: str) -> None:
    assert local_time(Language.EN, at, PORTLAND) == english
    assert local_time(Language.ES, at, PORTLAND) == spanish
    texts = compose_all(AlertKind.ALERT, areas=["Cully"], at=at, tz=PORTLAND)
    assert f"Cully at {english}." in texts["en"]
    assert f"Cully a las {spanish}." in texts["es"]


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        compose(AlertKind.ALERT, Language.EN, areas=["Cully"], at=datetime(2026, 1, 1), tz=PORTLAND)


def test_an_update_needs_a_note() -> None:
    with pytest.raises(NoteRefused):
        compose(AlertKind.UPDATE, Language.EN, areas=["Cully"], at=NOON, tz=PORTLAND)


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize(
    "note", ["Plate ABC1234, white van", "Call 503 555 0123", "They are at 4215 NE Going St"]
)
def test_an_update_refuses_a_note_that_names_someone(language: Language, note: str) -> None:
    with pytest.raises(NoteRefused) as refused:
        compose(AlertKind.UPDATE, language, areas=["Cully"], at=NOON, tz=PORTLAND, note=note)
    assert not re.search(r"\d", str(refused.value))


def test_an_update_note_is_tidied_and_ends_a_sentence() -> None:
    body = compose(
        AlertKind.UPDATE, Language.ES, areas=["Cully"], at=NOON, tz=PORTLAND, note=" Siguen ahí  "
    )
    assert body.startswith("NOVEDAD (Cully, 12:05): Siguen ahi. No abra la puerta.")
    asked = compose(
        AlertKind.UPDATE, Language.EN, areas=["Cully"], at=NOON, tz=PORTLAND, note="Still there?"
    )
    assert "Still there? Do not" in asked


def test_an_all_clear_takes_no_note() -> None:
    with pytest.raises(ValueError, match="no note"):
        compose(AlertKind.ALL_CLEAR, Language.EN, areas=["Cully"], at=NOON, tz=PORTLAND, note="hi")


def test_an_alert_may_carry_a_line_of_the_dispatchers_own() -> None:
    body = compose(
        AlertKind.ALERT,
        Language.EN,
        areas=["Cully"],
        at=NOON,
        tz=PORTLAND,
        note="Avoid NE 42nd and Killingsworth",
    )
    assert body.startswith(
        "ALERT: immigration agents confirmed in Cully at 12:05 PM. "
        "Avoid NE 42nd and Killingsworth. "
    )
    with pytest.raises(NoteRefused):
        compose(
            AlertKind.ALERT, Language.EN, areas=["Cully"], at=NOON, tz=PORTLAND, note="ABC 1234"
        )


def test_a_correction_corrects_the_area_or_the_time_with_its_reason() -> None:
    wrong_area = compose(
        AlertKind.CORRECTION,
        Language.EN,
        areas=["Russell"],
        at=NOON,
        tz=PORTLAND,
        correcting=Correcting.AREA,
        place="Eliot",
        note="The corner is in Eliot",
    )
    assert wrong_area.startswith(
        "CORRECTION: the alert of 12:05 PM named Russell by mistake: it was in Eliot. "
        "The corner is in Eliot. "
    )
    wrong_time = compose(
        AlertKind.CORRECTION,
        Language.ES,
        areas=["Cully"],
        at=NOON,
        tz=PORTLAND,
        correcting=Correcting.TIME,
    )
    assert wrong_time.startswith("CORRECCION: la alerta de Cully tenia la hora equivocada")
    assert "a las 12:05" in wrong_time
    with pytest.raises(ValueError, match="right one"):
        compose(
            AlertKind.CORRECTION,
            Language.EN,
            areas=["Cully"],
            at=NOON,
            tz=PORTLAND,
            correcting=Correcting.AREA,
        )


@pytest.mark.parametrize("areas", [[], ["  "], ["Cully", ""]])
def test_an_alert_needs_areas(areas: list[str]) -> None:
    with pytest.raises(ValueError, match="area"):
        compose(AlertKind.ALERT, Language.EN, areas=areas, at=NOON, tz=PORTLAND)


def test_announcements_are_not_composed() -> None:
    with pytest.raises(ValueError, match="by hand"):
        compose(AlertKind.ANNOUNCEMENT, Language.EN, areas=["Cully"], at=NOON, tz=PORTLAND)


def test_duplicate_areas_are_listed_once() -> None:
    body = compose(AlertKind.ALERT, Language.EN, areas=["Cully", "Cully"], at=NOON, tz=PORTLAND)
    assert "in Cully at" in body


# --- compose_all, previews --------------------------------------------------------------


def test_compose_all_gives_every_language() -> None:
    texts = compose_all(
        AlertKind.UPDATE, areas=["Cully", "Lents"], at=NOON, tz=PORTLAND, note="Still there"
    )
    assert set(texts) == {language.value for language in Language}
    for language in Language:
        assert texts[language.value] == compose(
            AlertKind.UPDATE,
            language,
            areas=["Cully", "Lents"],
            at=NOON,
            tz=PORTLAND,
            note="Still there",
        )


def test_previews_show_encoding_and_segments() -> None:
    texts = compose_all(AlertKind.ALERT, areas=["Cully"], at=NOON, tz=PORTLAND)
    shown = previews(texts)
    assert [p.language for p in shown] == list(Language)
    for item in shown:
        assert item == Preview(
            item.language, texts[item.language.value], "GSM-7", 1, len(texts[item.language.value])
        )


def test_preview_of_a_ucs2_text() -> None:
    item = preview(Language.ES, "Información \U0001f6a8")
    assert (item.encoding, item.units, item.segments) == ("UCS-2", 14, 1)
    assert item.text == "Información \U0001f6a8"


# --- the signature --------------------------------------------------------------------------


def test_every_text_ends_with_the_signature() -> None:
    texts = compose_all(
        AlertKind.ALL_CLEAR,
        areas=["Cully"],
        at=NOON,
        tz=PORTLAND,
        signatures=signatures("PDX Rapid Response", "Red PDX"),
    )
    assert texts["en"] == (
        "ALL CLEAR: no agents reported in Cully since 12:05 PM. "
        "Text RIGHTS to know your rights. -PDX Rapid Response"
    )
    assert texts["es"].endswith("Sus derechos: mande DERECHOS. -Red PDX")


def _region_area_names() -> list[str]:
    from rapidresponse.regions import demo_region_path, load_region_file

    return sorted({area.name for area in load_region_file(demo_region_path())}, key=len)


AREA_NAMES = _region_area_names()
# A note (an update's, an alert's line, a correction's reason) of up to 80 characters may
# take a second segment; without one, every text fits one.
NOTE_BUDGET, BARE_BUDGET = 2, 1


@given(
    kind=st.sampled_from(KINDS),
    correcting=st.sampled_from(list(Correcting)),
    language=st.sampled_from(list(Language)),
    area=st.sampled_from(AREA_NAMES),
    place=st.sampled_from(AREA_NAMES),
    with_note=st.booleans(),
    org=st.text(
        alphabet=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz -."),
        min_size=1,
        max_size=24,
    ).filter(lambda name: name.strip() != ""),
    note_length=st.integers(min_value=1, max_value=NOTE_MAX_CHARS),
)
def test_with_its_signature_every_text_stays_within_its_budget_and_gsm7(
    kind: AlertKind,
    correcting: Correcting,
    language: Language,
    area: str,
    place: str,
    with_note: bool,
    org: str,
    note_length: int,
) -> None:
    """Every template (each correction: false alarm, wrong area, wrong time), in every
    language, with every area name of the region pack, with and without the dispatcher's
    line, and any ORG_NAME the configuration accepts (up to 24 plain characters)."""
    note = ("Agents left toward SE Foster and 82nd " * 3)[:note_length].strip() or "Gone"
    noted = kind is AlertKind.UPDATE or (with_note and kind in TAKES_A_NOTE)
    signature = signatures(" ".join(org.split()), " ".join(org.split()))[language.value]
    body = compose(
        kind,
        language,
        areas=[area],
        at=NOON,
        tz=PORTLAND,
        note=note if noted else None,
        signature=signature,
        correcting=correcting,
        place=place,
    )
    cost = segment(body)
    assert cost.encoding == "GSM-7" and is_gsm7(body)
    assert cost.segments <= (NOTE_BUDGET if noted else BARE_BUDGET)
    assert body.endswith(signature) and KEYWORD[language] in body


def test_a_typed_clock_time_is_the_latest_such_moment_up_to_now() -> None:
    portland = ZoneInfo("America/Los_Angeles")
    now = datetime(2026, 12, 6, 18, 30, tzinfo=UTC)  # 10:30 in Portland
    assert last_clock_time("9:05", portland, now) == datetime(2026, 12, 6, 17, 5, tzinfo=UTC)
    assert last_clock_time(" 10:30 ", portland, now) == now
    # Later than now on the clock: it was yesterday (a correction names the past).
    assert last_clock_time("23:00", portland, now) == datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    for typed in ("", "noon", "25:99", "9", "9:5"):
        assert last_clock_time(typed, portland, now) is None
