"""Short codes people read aloud and type on a phone: reports and incidents (K7P2)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

# No look-alikes (I/1, O/0, L, S/5, Z/2, B/8). Letter-digit-letter-digit always has a
# letter and a digit (how the SMS parser recognises a code) and never reads as an
# ordinal like "5TH".
LETTERS = "ACDEFGHJKMNPQRTUVWXY"
DIGITS = "34679"
ATTEMPTS = 50


def new_code(taken: Callable[[str], bool]) -> str:
    """A fresh code for which ``taken(code)`` is False.

    Raises:
        RuntimeError: no free code after many tries (the code space is nearly full).
    """
    for length in (4, 6):
        for _ in range(ATTEMPTS):
            code = "".join(secrets.choice(LETTERS if n % 2 == 0 else DIGITS) for n in range(length))
            if not taken(code):
                return code
    raise RuntimeError("no free code: purge old incidents and reports")
