"""What people typed, made safe to show or relay: it reads as what it says.

Unicode's invisible format characters can make text display differently from what it
holds: a right-to-left override turns "ICE at 24th" into something else on the board,
isolates and embeddings reorder words, zero-width characters hide words from a reader
(and from the phone/plate/address guard). Report text is stored and shown without them.
"""

from __future__ import annotations

import unicodedata

# Line breaks and tabs keep their meaning; every other control character is a space.
_KEPT_CONTROLS = frozenset("\n\t")


def visible_text(text: str) -> str:
    """``text`` without invisible format characters (Unicode category Cf: bidi controls,
    zero-width joiners and spaces, the BOM, soft hyphens) and lone surrogates; other
    control characters (category Cc) become spaces."""
    return "".join(_visible(char) for char in text)


def _visible(char: str) -> str:
    if char.isprintable() or char in _KEPT_CONTROLS:
        return char
    category = unicodedata.category(char)
    if category == "Cc":
        return " "
    if category in ("Cf", "Cs"):
        return ""
    return char  # a line or paragraph separator, unassigned code points: shown as they are
