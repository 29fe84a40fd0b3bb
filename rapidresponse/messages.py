"""Every SMS text we send, from the gettext catalogs in ``rapidresponse/locale``.

The catalogs use stable message ids ("sms.help") with the English text in the ``en``
catalog too, so an organizing collective can reword any message, in either language,
without touching code. They are read with Babel at first use (no compile step).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from string import Formatter

from babel.messages.pofile import read_po

from rapidresponse.models import Language

LOCALE_PATH = Path(__file__).resolve().parent / "locale"
DOMAIN = "sms"


class MissingMessage(LookupError):
    """A message id that is not in the catalog: a bug, caught by the catalog tests."""


@cache
def catalog(language: Language) -> Mapping[str, str]:
    """Message id → text for ``language``, read once from its .po file."""
    path = LOCALE_PATH / language.value / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as handle:
        parsed = read_po(handle, locale=language.value)
    return {str(m.id): str(m.string) for m in parsed if m.id and m.string and not m.fuzzy}


def text(language: Language, message_id: str, **params: str) -> str:
    """The text of ``message_id`` in ``language`` (English if not translated yet).

    Raises:
        MissingMessage: no catalog has that id.
    """
    template = catalog(language).get(message_id) or catalog(Language.EN).get(message_id)
    if template is None:
        raise MissingMessage(message_id)
    return template.format(**params)


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def join_names(names: list[str]) -> str:
    return ", ".join(names)
