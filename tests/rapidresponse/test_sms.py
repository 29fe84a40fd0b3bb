"""Encoding and segment counts, as carriers bill them."""

from __future__ import annotations

import pytest

from rapidresponse.sms import segment


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("", "GSM-7", 1),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension characters cost two septets
        ("€" * 81, "GSM-7", 2),
        ("Señor, está", "UCS-2", 1),  # 'á' is not GSM-7; 'ñ' is
        ("Senor, esta cerca. ñ é ü", "GSM-7", 1),
        ("a" * 69 + "á", "UCS-2", 1),
        ("a" * 70 + "á", "UCS-2", 2),
        ("🚨" * 35, "UCS-2", 1),  # an emoji is two UTF-16 code units
        ("🚨" * 36, "UCS-2", 2),
    ],
)
def test_segments(text: str, encoding: str, segments: int) -> None:
    result = segment(text)
    assert (result.encoding, result.segments) == (encoding, segments)
