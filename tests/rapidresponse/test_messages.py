"""The SMS catalogs: complete in both languages, and what each text costs to send."""

from __future__ import annotations

import pytest

from rapidresponse.messages import catalog, placeholders, text
from rapidresponse.models import Language
from rapidresponse.sms import segment

MAX_SEGMENTS = 2
# A long area name, so the cost shown is the cost of a realistic worst case.
SAMPLE = {
    "area": "Powellhurst-Gilbert",
    "areas": "Cully, Powellhurst-Gilbert, St. Johns",
    "choices": "Cully, Kenton, Lents",
    "example": "97211",
    "code": "K7P2",
    "name": "Guadalupe Hernandez",  # a responder's, in the welcome
    "codes": "K7P2, M3T9",
    "verdict": "FALSE ALARM",
    # A page quotes up to 60 characters of the first report.
    "what": "ICE van and 4 agents in vests at NE 42nd and Killingswort...",
    # Alerts (rapidresponse/composer.py): the longest clock time, a note of the most allowed.
    "time": "12:05 PM",
    "place": "Powellhurst-Gilbert",  # the right area of a correction
    "after": "12 min 59 s",  # PRACTICE's times
    "go_after": "12 min 59 s",
    "verdict_after": "1 h 59 min",
    "url": "https://alertas.red-de-respuesta-rapida.example.org/rights?lang=es",  # RIGHTS MORE
    "note": "Agents left toward SE Foster and 82nd; two vans still parked near the school lo.",
    "days": "14",  # keeping the list alive: RECONFIRM_WAIT_DAYS
}


def rendered(language: Language) -> dict[str, str]:
    return {mid: text(language, mid, **SAMPLE) for mid in catalog(language)}


def test_both_catalogs_have_the_same_messages() -> None:
    assert set(catalog(Language.EN)) == set(catalog(Language.ES))
    assert len(catalog(Language.EN)) >= 20


@pytest.mark.parametrize("message_id", sorted(catalog(Language.EN)))
def test_translations_use_the_same_placeholders(message_id: str) -> None:
    assert placeholders(catalog(Language.ES)[message_id]) == placeholders(
        catalog(Language.EN)[message_id]
    )


@pytest.mark.parametrize("language", list(Language))
def test_every_text_fits_two_segments(
    language: Language, capsys: pytest.CaptureFixture[str]
) -> None:
    report, too_long = [], []
    for message_id, body in sorted(rendered(language).items()):
        cost = segment(body)
        report.append(
            f"{language.value} {message_id:22} {cost.encoding:5} "
            f"{cost.units:4} units {cost.segments} segment(s)"
        )
        if cost.segments > MAX_SEGMENTS:
            too_long.append(message_id)
    with capsys.disabled():
        print("\n" + "\n".join(report))
    assert too_long == []


def test_spanish_texts_are_gsm7_where_we_chose_so() -> None:
    # Knowing choices: every Spanish text is written to stay GSM-7 (é, ñ, ¿ are GSM-7;
    # á í ó ú are not). A translator who adds one must change this list knowingly.
    ucs2 = sorted(
        mid for mid, body in rendered(Language.ES).items() if segment(body).encoding == "UCS-2"
    )
    assert ucs2 == []


def test_an_untranslated_message_falls_back_to_english() -> None:
    assert text(Language.ES, "sms.rights")  # present
    assert text(Language.EN, "sms.left", area="Cully") == (
        "You will no longer get alerts for Cully."
    )
