"""A refusal from the core (``rapidresponse.refusals``) in the staff member's language."""

from __future__ import annotations

from flask_babel import gettext as _

from rapidresponse.refusals import Refused


def refusal(refused: Refused) -> str:
    """The refusal in the staff member's language (its English wording is the msgid)."""
    translated: str = _(refused.wording)
    return translated % refused.details
