"""Report text reads as what it says: no bidi overrides, isolates or invisible words."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from rapidresponse.display import visible_text

SPOOFS = [
    "\u202e",  # right-to-left override: "ICE at \u202e42nd" shows reversed
    "\u202d",
    "\u202a",
    "\u202b",
    "\u202c",
    "\u2066",  # isolates
    "\u2067",
    "\u2068",
    "\u2069",
    "\u200e",  # marks
    "\u200f",
    "\u061c",
    "\u200b",  # zero-width space, joiners, the BOM, a soft hyphen
    "\u200c",
    "\u200d",
    "\ufeff",
    "\u00ad",
]


def test_every_spoofing_character_is_dropped() -> None:
    for char in SPOOFS:
        assert visible_text(f"ICE at {char}42nd") == "ICE at 42nd", repr(char)


def test_control_characters_are_spaces_but_lines_stay() -> None:
    assert (
        visible_text("3 vans\x1b[2J\x07\ngoing door\tto door") == "3 vans [2J \ngoing door\tto door"
    )


def test_ordinary_text_in_any_script_is_untouched() -> None:
    for text in (
        "Agentes en la Av. Cesar Chavez, 9:40",
        "ICE 在 82nd 街",
        "Lents — 2 vans 🚐",
        "a\u00a0b",
    ):
        assert visible_text(text) == text


@given(st.text())
def test_nothing_invisible_survives_and_cleaning_twice_changes_nothing(text: str) -> None:
    shown = visible_text(text)
    for char in shown:
        category = unicodedata.category(char)
        assert category not in ("Cf", "Cs"), repr(char)
        assert category != "Cc" or char in "\n\t", repr(char)
    assert visible_text(shown) == shown
