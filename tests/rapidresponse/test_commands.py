"""The SMS grammar (DESIGN §7): every keyword, in both languages, however it is typed."""

from __future__ import annotations

import string
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rapidresponse.commands import Command, Keyword, _parse, normalize, parse
from rapidresponse.models import Language

EN, ES = Language.EN, Language.ES
K = Keyword

# Whole-message keywords: (as typed, expected keyword, expected argument, expected language).
BARE: list[tuple[str, Keyword, str, Language | None]] = [
    ("stop", K.STOP, "", EN),
    ("stopall", K.STOP, "", EN),
    ("stop all", K.STOP, "", EN),
    ("unsubscribe", K.STOP, "", EN),
    ("cancel", K.STOP, "", EN),
    ("end", K.STOP, "", EN),
    ("quit", K.STOP, "", EN),
    ("revoke", K.STOP, "", EN),
    ("optout", K.STOP, "", EN),
    ("opt out", K.STOP, "", EN),
    ("alto", K.STOP, "", ES),
    ("parar", K.STOP, "", ES),
    ("baja", K.STOP, "", ES),
    ("start", K.START, "", EN),
    ("unstop", K.START, "", EN),
    ("help", K.HELP, "", EN),
    ("info", K.HELP, "", None),
    ("ayuda", K.HELP, "", ES),
    ("yes", K.YES, "", EN),
    ("y", K.YES, "", EN),
    ("si", K.YES, "", ES),
    ("sí", K.YES, "", ES),
    ("areas", K.AREAS, "", None),
    ("áreas", K.AREAS, "", ES),
    ("my areas", K.AREAS, "", EN),
    ("zonas", K.AREAS, "", ES),
    ("mis zonas", K.AREAS, "", ES),
    ("rights", K.RIGHTS, "", EN),
    ("derechos", K.RIGHTS, "", ES),
    ("rights home", K.RIGHTS, "home", EN),
    ("rights car", K.RIGHTS, "car", EN),
    ("rights work", K.RIGHTS, "work", EN),
    ("rights street", K.RIGHTS, "street", EN),
    ("rights more", K.RIGHTS, "more", EN),
    ("derechos casa", K.RIGHTS, "home", ES),
    ("derechos carro", K.RIGHTS, "car", ES),
    ("derechos trabajo", K.RIGHTS, "work", ES),
    ("derechos calle", K.RIGHTS, "street", ES),
    ("derechos más", K.RIGHTS, "more", ES),
    ("on", K.ON, "", None),
    ("off", K.OFF, "", None),
    ("activo", K.ON, "", ES),
    ("activa", K.ON, "", ES),
    ("inactivo", K.OFF, "", ES),
    ("inactiva", K.OFF, "", ES),
    ("español", K.LANG, "es", ES),
    ("espanol", K.LANG, "es", ES),
    ("spanish", K.LANG, "es", ES),
    ("english", K.LANG, "en", EN),
    ("inglés", K.LANG, "en", EN),
    ("ingles", K.LANG, "en", EN),
    ("lang", K.LANG, "", EN),
    ("idioma", K.LANG, "", ES),
    ("join", K.JOIN, "", EN),
    ("unirse", K.JOIN, "", ES),
    ("leave", K.LEAVE, "", EN),
    ("salir", K.LEAVE, "", ES),
    ("go", K.GO, "", EN),
    ("voy", K.GO, "", ES),
    ("confirm", K.CONFIRM, "", EN),
    ("confirmed", K.CONFIRM, "", EN),
    ("confirmo", K.CONFIRM, "", ES),
    ("confirmó", K.CONFIRM, "", ES),
    ("confirmado", K.CONFIRM, "", ES),
    ("confirmar", K.CONFIRM, "", ES),
    ("false", K.FALSE, "", EN),
    ("false alarm", K.FALSE, "", EN),
    ("falso", K.FALSE, "", ES),
    ("falsa alarma", K.FALSE, "", ES),
    ("unclear", K.UNCLEAR, "", EN),
    ("no claro", K.UNCLEAR, "", ES),
    ("noclaro", K.UNCLEAR, "", ES),
    ("dudoso", K.UNCLEAR, "", ES),
    ("join news", K.NEWS, "on", EN),
    ("news", K.NEWS, "on", EN),
    ("unirse noticias", K.NEWS, "on", ES),
    ("noticias", K.NEWS, "on", ES),
    ("news stop", K.NEWS, "off", EN),
    ("stop news", K.NEWS, "off", EN),
    ("noticias no", K.NEWS, "off", ES),
    ("salir noticias", K.NEWS, "off", ES),
    ("1", K.ANSWER, "yes", None),
    ("2", K.ANSWER, "no", None),
    ("no", K.ANSWER, "no", None),
]

# Ways people wrap a one-word message; none of them may change its meaning.
DRESSINGS = [
    "{}",
    "  {}  ",
    "{}!!",
    "{}.",
    "¡{}!",
    "¿{}?",
    '"{}"',
    "{} 🛑",
    "🙏{}🙏",
    "\u200b{}\u200b",
    "\u200f{}\u200e",
    "\ufeff{}\r\n",
]


def mixed_case(text: str) -> str:
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(text))


@pytest.mark.parametrize(("typed", "keyword", "argument", "language"), BARE)
@pytest.mark.parametrize("case", [str.lower, str.upper, str.title, mixed_case])
def test_every_keyword_in_any_case(
    typed: str,
    keyword: Keyword,
    argument: str,
    language: Language | None,
    case: Callable[[str], str],
) -> None:
    assert parse(case(typed)) == Command(keyword, argument, language)


@pytest.mark.parametrize(("typed", "keyword", "argument", "language"), BARE)
@pytest.mark.parametrize("dressing", DRESSINGS)
def test_every_keyword_with_spaces_punctuation_emoji_and_invisibles(
    typed: str, keyword: Keyword, argument: str, language: Language | None, dressing: str
) -> None:
    assert parse(dressing.format(typed)) == Command(keyword, argument, language)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("STOP!!", Command(K.STOP, language=EN)),
        ("stop.", Command(K.STOP, language=EN)),
        ("STOP 🛑", Command(K.STOP, language=EN)),
        ("¡ALTO!", Command(K.STOP, language=ES)),
        ("Si!!", Command(K.YES, language=ES)),
        ("SI.", Command(K.YES, language=ES)),
        ("SÍ", Command(K.YES, language=ES)),
        ("Opt-Out", Command(K.STOP, language=EN)),
        ("STOP-ALL", Command(K.STOP, language=EN)),
        ("STOP STOP STOP", Command(K.STOP, language=EN)),
        ("alto. ALTO!", Command(K.STOP, language=ES)),
        ("S\u0301I", Command(K.YES, language=ES)),  # accent typed as a separate mark
        ("\uff33\uff34\uff2f\uff30", Command(K.STOP, language=EN)),  # full-width letters
        ("ESPAN\u0303OL", Command(K.LANG, "es", ES)),
    ],
)
def test_examples_from_the_field(typed: str, expected: Command) -> None:
    assert parse(typed) == expected


@pytest.mark.parametrize(
    "typed",
    [
        "stop the raid on 5th",
        "STOP ICE at the school",
        "please stop",
        "They told us to stop",
        "end of the block, 3 vans",
        "cancel the meeting, ICE outside",
        "alto en la esquina",
        "baja de la camioneta",
        "yes they are here",
        "si hay agentes",
        "help me ICE at my door",
        "ayuda por favor estan aqui",
        "on 5th and Alberta",
        "off Killingsworth",
        "start of shift raid",
        "rights were not read",
        "info about the raid",
        "y tambien una camioneta",
        "out",
        "all",
        "stop out",
        "K7P2",
        "K7P2 3 vans",
        "ICE agents said go away",
        "Agents said false things",
        "5th GO",
        "Lang street has two vans",
        "Two vans 🚐 on Lombard!",
    ],
)
def test_anything_else_is_a_report_kept_as_sent(typed: str) -> None:
    assert parse(typed) == Command(K.REPORT, typed)


@pytest.mark.parametrize(
    "typed", ["", " ", "\n\t ", "🚨", "🚨🚨 👮", "!!!", "¿?", "\u200b", "\x00", "\ud800", "\u200f"]
)
def test_a_message_without_letters_or_digits_is_an_empty_report(typed: str) -> None:
    assert parse(typed) == Command(K.REPORT, "")


def test_a_report_keeps_its_text_exactly_apart_from_surrounding_whitespace() -> None:
    text = "  Dos camionetas blancas en la Peña — ¡cuidado! 🚨\n"
    assert parse(text) == Command(K.REPORT, "Dos camionetas blancas en la Peña — ¡cuidado! 🚨")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("JOIN Cully", Command(K.JOIN, "Cully", EN)),
        ("join cully", Command(K.JOIN, "cully", EN)),
        ("JOIN St. Johns", Command(K.JOIN, "St. Johns", EN)),
        ("JOIN   St.   Johns  ", Command(K.JOIN, "St. Johns", EN)),
        ("JOIN Cully 🙏", Command(K.JOIN, "Cully", EN)),
        ("JOIN: Cully!", Command(K.JOIN, "Cully", EN)),
        ("join - Cully", Command(K.JOIN, "Cully", EN)),
        ("JOIN 97211", Command(K.JOIN, "97211", EN)),
        ("join\u200b97211\u200b", Command(K.JOIN, "97211", EN)),
        ("JOIN (NE) Cully", Command(K.JOIN, "(NE) Cully", EN)),
        ("JOIN Cully (NE)", Command(K.JOIN, "Cully (NE)", EN)),
        ("JOIN Saint\u200dJohns", Command(K.JOIN, "SaintJohns", EN)),
        ("JOIN Cully\nArgay", Command(K.JOIN, "Cully Argay", EN)),
        ("join", Command(K.JOIN, "", EN)),
        ("JOIN 🙏", Command(K.JOIN, "", EN)),
        ("UNIRSE Peña", Command(K.JOIN, "Peña", ES)),
        ("unirse: Peña", Command(K.JOIN, "Peña", ES)),
        ("Unir Peña", Command(K.JOIN, "Peña", ES)),
        ("UNIRSE Jose\u0301", Command(K.JOIN, "Jose\u0301", ES)),
        ("¡Unirse a Sellwood-Moreland!", Command(K.JOIN, "a Sellwood-Moreland", ES)),
        ("LEAVE Cully", Command(K.LEAVE, "Cully", EN)),
        ("leave st. johns.", Command(K.LEAVE, "st. johns", EN)),
        ("leave", Command(K.LEAVE, "", EN)),
        ("SALIR Peña", Command(K.LEAVE, "Peña", ES)),
        ("salir 97211", Command(K.LEAVE, "97211", ES)),
    ],
)
def test_join_and_leave_keep_the_area_as_typed(typed: str, expected: Command) -> None:
    assert parse(typed) == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("LANG EN", Command(K.LANG, "en", EN)),
        ("lang es", Command(K.LANG, "es", EN)),
        ("Lang: ES", Command(K.LANG, "es", EN)),
        ("LANG=es", Command(K.LANG, "es", EN)),
        ("LANG ENGLISH", Command(K.LANG, "en", EN)),
        ("LANG SPANISH", Command(K.LANG, "es", EN)),
        ("LANG ESPANOL", Command(K.LANG, "es", EN)),
        ("lang español", Command(K.LANG, "es", EN)),
        ("LANG INGLES", Command(K.LANG, "en", EN)),
        ("LANG INGLÉS!", Command(K.LANG, "en", EN)),
        ("LANG es please", Command(K.LANG, "es", EN)),
        ("LANG FR", Command(K.LANG, "", EN)),
        ("LANG", Command(K.LANG, "", EN)),
        ("IDIOMA ES", Command(K.LANG, "es", ES)),
        ("idioma en", Command(K.LANG, "en", ES)),
        ("Idioma: Inglés", Command(K.LANG, "en", ES)),
        ("IDIOMA ESPAÑOL", Command(K.LANG, "es", ES)),
        ("idioma en español", Command(K.LANG, "es", ES)),
        ("IDIOMA", Command(K.LANG, "", ES)),
        ("ESPAÑOL", Command(K.LANG, "es", ES)),
        ("Spanish!", Command(K.LANG, "es", ES)),
        ("ENGLISH", Command(K.LANG, "en", EN)),
        ("INGLÉS", Command(K.LANG, "en", EN)),
    ],
)
def test_language(typed: str, expected: Command) -> None:
    assert parse(typed) == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("K7P2 GO", Command(K.GO, "", EN, "K7P2")),
        ("go k7p2", Command(K.GO, "", EN, "K7P2")),
        ("GO", Command(K.GO, "", EN, None)),
        ("k7p2: go!", Command(K.GO, "", EN, "K7P2")),
        ("#K7P2 GO", Command(K.GO, "", EN, "K7P2")),
        ("K7P2 VOY", Command(K.GO, "", ES, "K7P2")),
        ("voy k7p2, llego en 10 min", Command(K.GO, "llego en 10 min", ES, "K7P2")),
        ("GO 5 min away", Command(K.GO, "5 min away", EN, None)),
        ("GO 5th and Alberta", Command(K.GO, "5th and Alberta", EN, None)),
        ("ABC1 GO", Command(K.GO, "", EN, "ABC1")),
        ("1ab go", Command(K.GO, "", EN, "1AB")),
        (
            "K7P2 CONFIRM 3 vans, agents in vests",
            Command(K.CONFIRM, "3 vans, agents in vests", EN, "K7P2"),
        ),
        ("CONFIRMED k7p2", Command(K.CONFIRM, "", EN, "K7P2")),
        ("confirm", Command(K.CONFIRM, "", EN, None)),
        ("confirmo K7P2 dos camionetas", Command(K.CONFIRM, "dos camionetas", ES, "K7P2")),
        ("K7P2 CONFIRMÓ", Command(K.CONFIRM, "", ES, "K7P2")),
        ("K7P2 confirmado: están en la Peña", Command(K.CONFIRM, "están en la Peña", ES, "K7P2")),
        ("CONFIRMAR K7P2", Command(K.CONFIRM, "", ES, "K7P2")),
        (
            "K7P2 FALSE it was a utility crew",
            Command(K.FALSE, "it was a utility crew", EN, "K7P2"),
        ),
        ("K7P2 FALSE ALARM - utility crew.", Command(K.FALSE, "utility crew", EN, "K7P2")),
        ("false alarm", Command(K.FALSE, "", EN, None)),
        ("False teeth", Command(K.FALSE, "teeth", EN, None)),
        ("K7P2 FALSO", Command(K.FALSE, "", ES, "K7P2")),
        (
            "falsa alarma K7P2 era la compañía de gas",
            Command(K.FALSE, "era la compañía de gas", ES, "K7P2"),
        ),
        ("K7P2 UNCLEAR", Command(K.UNCLEAR, "", EN, "K7P2")),
        ("unclear k7p2 couldn't see", Command(K.UNCLEAR, "couldn't see", EN, "K7P2")),
        ("K7P2 NO CLARO", Command(K.UNCLEAR, "", ES, "K7P2")),
        ("noclaro", Command(K.UNCLEAR, "", ES, None)),
        ("K7P2 dudoso, no vi nada", Command(K.UNCLEAR, "no vi nada", ES, "K7P2")),
        (
            'K7P2 confirm they said "go home"!',
            Command(K.CONFIRM, 'they said "go home"', EN, "K7P2"),
        ),
        ("K7P2 CONFIRM ¿son agentes? sí", Command(K.CONFIRM, "¿son agentes? sí", EN, "K7P2")),
        ("k7p2 go 🚗", Command(K.GO, "", EN, "K7P2")),
    ],
)
def test_responder_words(typed: str, expected: Command) -> None:
    assert parse(typed) == expected


@pytest.mark.parametrize(
    "word", ["2", "97211", "AB", "A1", "ABCDEFG", "ABCDEF1", "ABC", "1234567", "5TH", "2nd"]
)
def test_what_is_not_an_incident_code(word: str) -> None:
    assert parse(f"{word} CONFIRM").keyword is K.REPORT
    assert parse(f"CONFIRM {word}") == Command(K.CONFIRM, word, EN, None)


def test_a_long_message_parses() -> None:
    assert parse("K7P2 CONFIRM " + "vans " * 2000).argument == ("vans " * 2000).strip()
    long_text = "x" * 10_000
    assert parse(long_text) == Command(K.REPORT, long_text)
    assert parse("JOIN " + "Cully " * 2000).argument == " ".join(["Cully"] * 2000)
    assert parse("STOP " * 2000) == Command(K.STOP, language=EN)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("¡Sí!  🙏", "si"),
        ("  ESPAÑOL ", "espanol"),
        ("Inglés", "ingles"),
        ("St.\tJohns", "st johns"),
        ("K7P2: go!!", "k7p2 go"),
        ("ST\u200dOP", "stop"),
        ("ST\u200bOP", "st op"),
        ("Straße", "strasse"),
        ("\uff2a\uff2f\uff29\uff2e", "join"),
        ("\x00stop\x00", "stop"),
        ("", ""),
        ("🛑", ""),
    ],
)
def test_normalize(text: str, normalized: str) -> None:
    assert normalize(text) == normalized


# --- properties ------------------------------------------------------------------------

# Every category, lone surrogates included; the tricky ones (surrogates, invisible format
# characters, combining marks) drawn more often than their share of Unicode.
ANY_CHARACTER = st.characters(exclude_categories=()) | st.characters(categories=["Cs", "Cf", "Mn"])
ASCII_ALLOWED = set(string.ascii_lowercase + string.digits + " ")


@settings(max_examples=300, deadline=None)
@given(st.text(ANY_CHARACTER))
@example("\ud800STOP\udfff")
@example("JOIN \udc00Pe\u0303n\u0303a\x00\u202e")
@example("K7P2\u200dGO\ufeff\ud83d")
def test_parse_never_raises_on_any_unicode(text: str) -> None:
    # The parser proper, not parse(): parse() turns any exception into a report (so that
    # a bug never drops a sighting), which would hide the very bugs this test looks for.
    command = _parse(text)
    assert isinstance(command, Command)
    assert isinstance(command.keyword, Keyword)
    if command.keyword is K.REPORT:
        assert command.argument in (text.strip(), "")


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=12_000))
def test_parse_never_raises_on_long_text(text: str) -> None:
    assert isinstance(_parse(text), Command)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([typed for typed, *_ in BARE]), st.sampled_from(DRESSINGS))
def test_case_and_dressing_never_change_a_keyword(word: str, dressing: str) -> None:
    assert parse(word.upper()) == parse(word.lower()) == parse(dressing.format(word.title()))


@settings(max_examples=300, deadline=None)
@given(st.text(ANY_CHARACTER))
def test_normalize_leaves_only_folded_letters_digits_and_single_spaces(text: str) -> None:
    normalized = normalize(text)
    assert normalized == normalized.strip()
    assert "  " not in normalized
    for char in normalized:
        assert char == " " or (char.isalnum() and char.casefold() == char)
        assert not char.isascii() or char in ASCII_ALLOWED
    assert normalize(normalized) == normalized
