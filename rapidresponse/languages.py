"""Guessing whether a free-text report is in Spanish, to answer in the reporter's language."""

from __future__ import annotations

from rapidresponse.commands import normalize
from rapidresponse.models import Language

# Frequent words that are Spanish and not English (accents already stripped), and back.
SPANISH = frozenset(
    (
        "de",
        "la",
        "el",
        "en",
        "los",
        "las",
        "que",
        "y",
        "una",
        "un",
        "hay",
        "esta",
        "estan",
        "son",
        "con",
        "por",
        "para",
        "del",
        "al",
        "se",
        "su",
        "sus",
        "agentes",
        "migra",
        "inmigracion",
        "policia",
        "calle",
        "esquina",
        "casa",
        "carro",
        "camioneta",
        "camionetas",
        "frente",
        "cerca",
        "aqui",
        "alli",
        "ahora",
        "vi",
        "vimos",
        "tienda",
        "escuela",
        "trabajo",
        "hombres",
        "mujeres",
        "muchos",
    )
)
ENGLISH = frozenset(
    (
        "the",
        "and",
        "is",
        "are",
        "at",
        "on",
        "in",
        "of",
        "to",
        "a",
        "an",
        "there",
        "near",
        "with",
        "by",
        "from",
        "they",
        "their",
        "van",
        "vans",
        "car",
        "street",
        "corner",
        "house",
        "store",
        "school",
        "work",
        "men",
        "women",
        "agents",
        "police",
        "now",
        "saw",
        "just",
    )
)


def guess(text: str) -> Language:
    """Spanish when the text has clearly more Spanish words than English ones."""
    words = normalize(text).split()
    spanish = sum(word in SPANISH for word in words)
    english = sum(word in ENGLISH for word in words)
    return Language.ES if spanish >= 2 and spanish > english else Language.EN
