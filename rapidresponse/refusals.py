"""Refusals: actions the rules do not allow right now, worded for the person who tried.

The wording is English and marked with ``N_`` (gettext's "noop"): the core stays free of
Flask-Babel, pybabel extracts the marked text (see babel.cfg), and the web UI shows the
same text from its catalog in the staff member's language. ``details`` fill the
wording's placeholders with numbers from the rules, never with what was typed: a refusal
never quotes a note, a number or a report.
"""

from __future__ import annotations


def N_(message: str) -> str:  # gettext's conventional name for a noop marker
    """Mark ``message`` for translation without translating it here."""
    return message


class Refused(ValueError):
    """The base of every refusal; ``str()`` is the English wording, filled in."""

    def __init__(self, wording: str, **details: int) -> None:
        super().__init__(wording % details)
        self.wording = wording
        self.details = details
