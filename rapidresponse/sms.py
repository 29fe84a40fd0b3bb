"""How an SMS is encoded and how many segments (billable parts) it costs.

A message that is all GSM-7 fits 160 characters in one segment; one character outside it
(an emoji, a curly quote, a Spanish 'á' or 'í' or 'ó' or 'ú') switches the whole message
to UCS-2: 70 characters, and every segment costs the same. Carriers also count
segments, not messages, against a sender's rate, so pacing counts segments too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# GSM 03.38 default alphabet. Note é, ñ, ü, Ñ, Ü are in it; á, í, ó, ú are not.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs two septets (an escape, then the character).
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153  # septets; a multipart header eats 7
UCS2_SINGLE, UCS2_MULTI = 70, 67  # UTF-16 code units


@dataclass(frozen=True)
class Segmentation:
    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def is_gsm7(text: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENDED for char in text)


def segment(text: str) -> Segmentation:
    """Encoding and segment count of ``text`` as a carrier would bill it."""
    if is_gsm7(text):
        units = sum(2 if char in GSM7_EXTENDED else 1 for char in text)
        return Segmentation("GSM-7", units, _count(units, GSM7_SINGLE, GSM7_MULTI))
    units = len(text.encode("utf-16-le")) // 2  # an emoji is two code units
    return Segmentation("UCS-2", units, _count(units, UCS2_SINGLE, UCS2_MULTI))


def _count(units: int, single: int, multi: int) -> int:
    if units <= single:
        return 1
    return -(-units // multi)
