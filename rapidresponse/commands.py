"""The SMS grammar of the hotline number (DESIGN §7): turn one text message into a Command.

Pure and total: :func:`parse` accepts any ``str`` (empty, NUL bytes, lone surrogates,
bidi and zero-width marks, 10,000 characters) and never raises. Anything that is not a
command is a :attr:`Keyword.REPORT` carrying the message as sent, so nothing a person
writes is ever lost to the parser.

Matching works on :func:`normalize`'d words (case-folded, accents dropped, punctuation and
emoji turned into spaces), while arguments and notes are cut from the original text so
that accents and capitals survive ("UNIRSE Peña" → area "Peña").
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from rapidresponse.models import Language

__all__ = ["Command", "Keyword", "normalize", "parse"]

log = logging.getLogger(__name__)


class Keyword(str, Enum):
    """What a message asks for. Values are stable: they may be logged or stored."""

    STOP = "stop"
    START = "start"
    HELP = "help"
    JOIN = "join"
    YES = "yes"
    LEAVE = "leave"
    AREAS = "areas"
    LANG = "lang"
    RIGHTS = "rights"
    ON = "on"  # responder shift
    OFF = "off"
    GO = "go"  # responder dispatch words
    CONFIRM = "confirm"
    FALSE = "false"
    UNCLEAR = "unclear"
    PRACTICE = "practice"  # a responder's one-person drill
    NEWS = "news"  # announcements: argument "on" (JOIN NEWS) or "off" (NEWS STOP)
    ANSWER = "answer"  # 1 / 2 / NO: an announcement's answer ("yes"/"no"), if one is open
    DRILL = "drill"  # DRILL/SIMULACRO + a practice report (argument), during a drill
    JOIN_DRILL = "join_drill"  # JOIN DRILL / UNIRSE SIMULACRO: get the running drill's alerts
    REPORT = "report"  # anything else


@dataclass(frozen=True)
class Command:
    """One parsed message.

    Attributes:
        keyword: what the message asks for.
        argument: JOIN/LEAVE: the area as typed (accents and case kept, whitespace
            collapsed, surrounding punctuation and emoji trimmed); LANG: ``"en"``, ``"es"``
            or ``""`` when missing or unknown; REPORT: the message stripped of surrounding
            whitespace, otherwise unchanged (``""`` when it has no letter or digit at
            all); GO/CONFIRM/FALSE/UNCLEAR: the optional note, cut from the original
            text; RIGHTS: a topic of RIGHTS_TOPICS ("home", "car"...) or ``""``;
            otherwise ``""``.
        language: the language the keyword itself belongs to: ``Language.ES`` for a
            Spanish word, ``Language.EN`` for an English-only word, ``None`` when the
            word is shared by both (INFO, AREAS, ON, OFF) or for a REPORT.
        code: the incident code a responder gave, upper-cased, or ``None``.
    """

    keyword: Keyword
    argument: str = ""
    language: Language | None = None
    code: str | None = None


EN, ES = Language.EN, Language.ES
_Meaning = tuple[Keyword, Language | None]

# Opt-out words (DESIGN §7). A message made only of these (once or repeated, e.g.
# "STOP STOP") opts out; one inside a longer sentence does not.
_OPT_OUT: dict[str, Language] = {
    "stop": EN,
    "stopall": EN,
    "stop all": EN,
    "unsubscribe": EN,
    "cancel": EN,
    "end": EN,
    "quit": EN,
    "revoke": EN,
    "optout": EN,
    "opt out": EN,
    "alto": ES,
    "parar": ES,
    "baja": ES,
}

# Other commands that must be the whole message, by normalized text.
_WHOLE: dict[str, _Meaning] = {
    "start": (Keyword.START, EN),
    "unstop": (Keyword.START, EN),
    "help": (Keyword.HELP, EN),
    "info": (Keyword.HELP, None),
    "ayuda": (Keyword.HELP, ES),
    "yes": (Keyword.YES, EN),
    "y": (Keyword.YES, EN),
    "si": (Keyword.YES, ES),
    "areas": (Keyword.AREAS, None),  # also Spanish ("áreas"); see _whole_message
    "my areas": (Keyword.AREAS, EN),
    "zonas": (Keyword.AREAS, ES),
    "mis zonas": (Keyword.AREAS, ES),
    "mis areas": (Keyword.AREAS, ES),
    "rights": (Keyword.RIGHTS, EN),
    "derechos": (Keyword.RIGHTS, ES),
    "on": (Keyword.ON, None),
    "off": (Keyword.OFF, None),
    "practice": (Keyword.PRACTICE, EN),
    "practise": (Keyword.PRACTICE, EN),
    "practicar": (Keyword.PRACTICE, ES),
    "practica": (Keyword.PRACTICE, ES),
    "activo": (Keyword.ON, ES),
    "activa": (Keyword.ON, ES),
    "inactivo": (Keyword.OFF, ES),
    "inactiva": (Keyword.OFF, ES),
}

# Announcements have their own consent: these, as the whole message, give or take it back.
_NEWS: dict[str, tuple[str, Language | None]] = {
    "join news": ("on", EN),
    "news": ("on", EN),
    "news on": ("on", EN),
    "unirse noticias": ("on", ES),
    "unir noticias": ("on", ES),
    "noticias": ("on", ES),
    "noticias si": ("on", ES),
    "stop news": ("off", EN),
    "news stop": ("off", EN),
    "news off": ("off", EN),
    "leave news": ("off", EN),
    "no news": ("off", EN),
    "salir noticias": ("off", ES),
    "noticias no": ("off", ES),
    "no noticias": ("off", ES),
    "alto noticias": ("off", ES),
    "noticias alto": ("off", ES),
    "baja noticias": ("off", ES),
}
# Joining the running drill, as the whole message.
_JOIN_DRILL: dict[str, Language] = {
    "join drill": EN,
    "drill join": EN,
    "unirse simulacro": ES,
    "unir simulacro": ES,
    "simulacro unirse": ES,
}
# The first word of a drill's report ("DRILL ICE van at ...", "SIMULACRO migra en ...").
_DRILL_WORDS: dict[str, Language] = {"drill": EN, "simulacro": ES}

# An announcement's answer, as the whole message (YES and SI are Keyword.YES: the desk
# decides between a pending subscription and an open question).
_ANSWERS: dict[str, str] = {"1": "yes", "2": "no", "no": "no"}

# Know-your-rights topics after RIGHTS/DERECHOS ("RIGHTS HOME", "DERECHOS CARRO"), by
# normalized word; the topic names a catalog message sms.rights_<topic>.
RIGHTS_TOPICS: dict[str, str] = {
    "home": "home",
    "house": "home",
    "casa": "home",
    "hogar": "home",
    "car": "car",
    "carro": "car",
    "auto": "car",
    "coche": "car",
    "work": "work",
    "job": "work",
    "trabajo": "work",
    "street": "street",
    "calle": "street",
    "more": "more",
    "mas": "more",
}

# Language names, for LANG/IDIOMA and alone as a whole message ("ESPAÑOL").
_LANGUAGE_NAMES: dict[str, Language] = {
    "english": EN,
    "ingles": EN,
    "spanish": ES,
    "espanol": ES,
}
_LANGUAGE_CODES: dict[str, Language] = {"en": EN, "es": ES}

# Words that take the rest of the message as an area.
_AREA_COMMANDS: dict[str, _Meaning] = {
    "join": (Keyword.JOIN, EN),
    "unirse": (Keyword.JOIN, ES),
    "unir": (Keyword.JOIN, ES),
    "leave": (Keyword.LEAVE, EN),
    "salir": (Keyword.LEAVE, ES),
}
_LANG_COMMANDS: dict[str, Language] = {"lang": EN, "idioma": ES}

# Responder words, by normalized word sequence; the longest match wins.
_VERBS: dict[tuple[str, ...], _Meaning] = {
    ("go",): (Keyword.GO, EN),
    ("voy",): (Keyword.GO, ES),
    ("confirm",): (Keyword.CONFIRM, EN),
    ("confirmed",): (Keyword.CONFIRM, EN),
    ("confirmo",): (Keyword.CONFIRM, ES),
    ("confirmado",): (Keyword.CONFIRM, ES),
    ("confirmar",): (Keyword.CONFIRM, ES),
    ("false",): (Keyword.FALSE, EN),
    ("false", "alarm"): (Keyword.FALSE, EN),
    ("falso",): (Keyword.FALSE, ES),
    ("falsa",): (Keyword.FALSE, ES),
    ("falsa", "alarma"): (Keyword.FALSE, ES),
    ("unclear",): (Keyword.UNCLEAR, EN),
    ("no", "claro"): (Keyword.UNCLEAR, ES),
    ("noclaro",): (Keyword.UNCLEAR, ES),
    ("dudoso",): (Keyword.UNCLEAR, ES),
    ("dudosa",): (Keyword.UNCLEAR, ES),
}
_LONGEST_VERB = max(len(words) for words in _VERBS)

# An incident code: 3-6 letters and digits with at least one of each. Ordinals ("5th",
# "2nd") are street names far more often than codes, so they never count as one.
_CODE = re.compile(r"(?=[a-z0-9]*[0-9])(?=[a-z0-9]*[a-z])[a-z0-9]{3,6}")
_ORDINAL = re.compile(r"[0-9]+(?:st|nd|rd|th)")

# Brackets and quotes kept at the edge of an area or note when they pair with one inside.
_CLOSER_OF = {
    "(": ")",
    "[": "]",
    "{": "}",
    "\u201c": "\u201d",  # double curly quotes
    "\u2018": "\u2019",  # single curly quotes
    "«": "»",
    "¿": "?",
    "¡": "!",
}
_QUOTES = ("'", '"')
_ZERO_WIDTH_SPACE = "\u200b"


@dataclass(frozen=True)
class _Word:
    """One normalized word and the slice ``text[start:end]`` it came from."""

    text: str
    start: int
    end: int


# --- normalizing ---------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """One character, normalized: ``""`` if invisible, spaces for separators.

    Compatibility-decomposed, case-folded, with combining marks and invisible format
    characters (bidi marks, joiners, soft hyphens) dropped; the zero-width space counts
    as a space. May be several characters ("ß" → "ss", "½" → "1 2").
    """
    if char == _ZERO_WIDTH_SPACE:
        return " "
    if unicodedata.category(char) == "Cf":
        return ""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", char).casefold())
    return "".join(
        (c if c.isalnum() else " ")
        for c in decomposed
        if not _is_invisible(unicodedata.category(c))
    )


def _is_invisible(category: str) -> bool:
    """Combining marks and format characters: dropped, they split no word."""
    return category[0] == "M" or category == "Cf"


def _words(text: str) -> list[_Word]:
    """The normalized words of ``text`` with their positions in it."""
    words: list[_Word] = []
    letters: list[str] = []
    start = end = 0
    for index, char in enumerate(text):
        piece = _fold(char)
        if not piece:
            if letters and unicodedata.category(char)[0] == "M":
                end = index + 1  # an accent typed as a separate mark belongs to its word
            continue
        for folded in piece:
            if folded != " ":
                if not letters:
                    start = index
                letters.append(folded)
                end = index + 1
            elif letters:
                words.append(_Word("".join(letters), start, end))
                letters = []
    if letters:
        words.append(_Word("".join(letters), start, end))
    return words


def normalize(text: str) -> str:
    """``text`` as a matching key: case-folded, accents dropped, only letters/digits.

    Every character that is not a letter or digit (punctuation, ``¡¿``, quotes, emoji,
    control characters) becomes a space, whitespace is collapsed and the ends stripped;
    invisible format characters are dropped. ``normalize("¡Sí!  🙏") == "si"``.
    """
    return " ".join(word.text for word in _words(text))


# --- cutting arguments out of the original text --------------------------------------


def _widen(text: str, start: int, end: int, floor: int) -> tuple[int, int]:
    """Grow ``text[start:end]`` over edge brackets/quotes that pair with ones inside.

    So "(NE) Cully" and 'said "go home"' keep their brackets and quotes, while a lone
    trailing "!" or "." is still trimmed. Never grows left of ``floor``.
    """
    core = text[start:end]
    close_needed = {c: max(0, core.count(o) - core.count(c)) for o, c in _CLOSER_OF.items()}
    open_needed = {o: max(0, core.count(c) - core.count(o)) for o, c in _CLOSER_OF.items()}
    quote_needed = {q: core.count(q) % 2 for q in _QUOTES}
    while end < len(text) and (close_needed.get(text[end], 0) or quote_needed.get(text[end], 0)):
        for needed in (close_needed, quote_needed):
            if text[end] in needed:
                needed[text[end]] -= 1
                break
        end += 1
    while start > floor and (
        open_needed.get(text[start - 1], 0) or quote_needed.get(text[start - 1], 0)
    ):
        for needed in (open_needed, quote_needed):
            if text[start - 1] in needed:
                needed[text[start - 1]] -= 1
                break
        start -= 1
    return start, end


def _cut(text: str, words: Sequence[_Word], floor: int) -> str:
    """The original text from the first to the last of ``words`` (``""`` if none)."""
    if not words:
        return ""
    start, end = _widen(text, words[0].start, words[-1].end, floor)
    return text[start:end]


def _area_text(text: str, words: Sequence[_Word], floor: int) -> str:
    """An area as typed: invisible characters dropped, whitespace collapsed."""
    visible = "".join(_visible(char) for char in _cut(text, words, floor))
    return " ".join(visible.split())


def _visible(char: str) -> str:
    """A space for control characters and the zero-width space; nothing for other
    invisible characters (bidi marks, joiners) and lone surrogates; else ``char``."""
    category = unicodedata.category(char)
    if category == "Cc" or char == _ZERO_WIDTH_SPACE:
        return " "
    return "" if category in ("Cf", "Cs") else char


# --- the grammar ---------------------------------------------------------------------


def _opt_out(words: Sequence[_Word]) -> Command | None:
    """STOP and friends, when they are all the message says (possibly repeated)."""
    languages: list[Language] = []
    index = 0
    while index < len(words):
        pair = " ".join(word.text for word in words[index : index + 2])
        if len(words) - index >= 2 and pair in _OPT_OUT:
            languages.append(_OPT_OUT[pair])
            index += 2
        elif words[index].text in _OPT_OUT:
            languages.append(_OPT_OUT[words[index].text])
            index += 1
        else:
            return None
    return Command(Keyword.STOP, language=languages[0]) if languages else None


def _whole_message(text: str, words: Sequence[_Word]) -> Command | None:
    """Commands that must be the entire message: START, HELP, YES, AREAS, ON, ESPAÑOL…"""
    if len(words) > 2:
        return None
    key = " ".join(word.text for word in words)
    if len(words) == 2 and words[0].text in ("rights", "derechos"):
        topic = RIGHTS_TOPICS.get(words[1].text)
        if topic is None:
            return None  # "derechos humanos en la calle 82": a sentence, so a report
        return Command(Keyword.RIGHTS, topic, _WHOLE[words[0].text][1])
    if key in _JOIN_DRILL:
        return Command(Keyword.JOIN_DRILL, language=_JOIN_DRILL[key])
    if key in _NEWS:
        wanted, language = _NEWS[key]
        return Command(Keyword.NEWS, wanted, language)
    if key in _ANSWERS:
        return Command(Keyword.ANSWER, _ANSWERS[key])
    if key in _LANGUAGE_NAMES:
        wanted = _LANGUAGE_NAMES[key]
        return Command(Keyword.LANG, wanted.value, wanted)
    if key not in _WHOLE:
        return None
    keyword, language = _WHOLE[key]
    if key == "areas" and _typed(text, words[0]) == "áreas":
        language = ES  # the accent says Spanish; without it the word is both languages
    return Command(keyword, language=language)


def _typed(text: str, word: _Word) -> str:
    """A word as typed, composed and case-folded but with its accents."""
    return unicodedata.normalize("NFC", text[word.start : word.end]).casefold()


def _area_command(text: str, words: Sequence[_Word]) -> Command | None:
    """JOIN/UNIRSE/UNIR and LEAVE/SALIR, followed by an area (or nothing)."""
    meaning = _AREA_COMMANDS.get(words[0].text)
    if meaning is None:
        return None
    keyword, language = meaning
    return Command(keyword, _area_text(text, words[1:], words[0].end), language)


def _drill(text: str, words: Sequence[_Word]) -> Command | None:
    """DRILL/SIMULACRO first: a drill's report (the rest of the text, ``""`` if none)."""
    language = _DRILL_WORDS.get(words[0].text)
    if language is None:
        return None
    return Command(Keyword.DRILL, _cut(text, words[1:], words[0].end), language)


def _lang_command(words: Sequence[_Word]) -> Command | None:
    """LANG/IDIOMA followed by a language ("LANG ES", "IDIOMA EN ESPAÑOL", "LANG")."""
    language = _LANG_COMMANDS.get(words[0].text)
    if language is None:
        return None
    rest = [word.text for word in words[1:]]
    named = [_LANGUAGE_NAMES[w] for w in rest[:2] if w in _LANGUAGE_NAMES]
    wanted = named[0] if named else _LANGUAGE_CODES.get(rest[0] if rest else "")
    if wanted is None and len(rest) > 1:
        return None  # "Lang Street has vans": a sentence, not a command
    return Command(Keyword.LANG, wanted.value if wanted else "", language)


def _code(word: _Word) -> str | None:
    """The word as an incident code, upper-cased, if it looks like one."""
    if _CODE.fullmatch(word.text) and not _ORDINAL.fullmatch(word.text):
        return word.text.upper()
    return None


def _verb_at(words: Sequence[_Word], index: int) -> tuple[Keyword, Language | None, int] | None:
    """The responder word starting at ``index``: its meaning and how many words it spans."""
    for length in range(_LONGEST_VERB, 0, -1):
        key = tuple(word.text for word in words[index : index + length])
        if len(key) == length and key in _VERBS:
            keyword, language = _VERBS[key]
            return keyword, language, length
    return None


def _responder(text: str, words: Sequence[_Word]) -> Command | None:
    """``[CODE] VERB [note]`` or ``VERB [CODE] [note]``; the note keeps the original text."""
    code = _code(words[0])
    index = 1 if code else 0
    verb = _verb_at(words, index)
    if verb is None:
        return None
    keyword, language, length = verb
    index += length
    if code is None and index < len(words):
        code = _code(words[index])
        index += 1 if code else 0
    note = _cut(text, words[index:], words[index - 1].end)
    return Command(keyword, note, language, code)


def _parse(text: str) -> Command:
    """:func:`parse`, without the safety net."""
    words = _words(text)
    if not words:
        return Command(Keyword.REPORT)
    return (
        _opt_out(words)
        or _whole_message(text, words)
        or _drill(text, words)
        or _area_command(text, words)
        or _lang_command(words)
        or _responder(text, words)
        or Command(Keyword.REPORT, text.strip())
    )


def parse(text: str) -> Command:
    """Parse one inbound SMS body; never raises.

    Grammar (DESIGN §7; the full table is in the README): opt-out words, START, HELP,
    YES, AREAS, RIGHTS, ON/OFF and a bare language name only as the whole message;
    JOIN/LEAVE/LANG and their Spanish forms followed by an argument; responder words
    with an optional incident code before or after them and an optional note. Everything
    else — including an empty or emoji-only message (argument ``""``) — is a REPORT.
    """
    try:
        return _parse(text)
    except Exception as error:  # pragma: no cover - a parser bug must not drop a sighting
        # Logged loudly (class name only: the message could quote the text), then the
        # text is handled as a report, which a person will read.
        log.error(
            "command parser failed (%s); handling the text as a report", error.__class__.__name__
        )
        return Command(Keyword.REPORT, text.strip())
