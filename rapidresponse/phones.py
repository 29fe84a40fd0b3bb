"""Phone numbers: parse what people type into E.164, or say clearly why not."""

from __future__ import annotations

import phonenumbers

MAX_INPUT_LENGTH = 40


class InvalidPhoneNumber(ValueError):
    """The text is not a valid phone number. The message never repeats the input."""


def normalize(text: str, default_region: str = "US") -> str:
    """Return ``text`` as an E.164 number (+15035550100).

    Args:
        text: what someone typed or what the carrier sent ("503-555-0100", "+1 503…").
        default_region: the country assumed when the number has no +country code.

    Raises:
        InvalidPhoneNumber: it is not a valid number for any country.
    """
    if not text or len(text) > MAX_INPUT_LENGTH:
        raise InvalidPhoneNumber("not a phone number")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumber("not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber("not a valid phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def last_four(e164: str) -> str:
    """The last four digits, the most any staff page ever shows of a number."""
    return e164[-4:]


def masked(e164: str) -> str:
    return masked_last_four(last_four(e164))


def masked_last_four(digits: str) -> str:
    """How a number shows on staff pages, from the last four digits kept for that purpose."""
    return "•••-" + digits


def display_number(e164: str, home_region: str = "US") -> str:
    """A public number (the hotline's) as people there write it: (503) 555-0100."""
    parsed = phonenumbers.parse(e164, None)
    same_country = phonenumbers.region_code_for_number(parsed) == home_region
    form = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if same_country
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return str(phonenumbers.format_number(parsed, form))
