"""The public report form: ``GET|POST /report``, in English or Spanish, without JavaScript.

A sighting typed here takes the same road as one texted to the hotline (``ReportDesk``),
described after S.A.L.U.T.E. so that responders know what to look for. What we keep of
the reporter is nothing: no address, no user agent, no cookie but the CSRF one. The
per-client rate limit is keyed by an HMAC of the address under the daily reporter key,
which is destroyed after a day.

The language is ``?lang=es|en`` if given, else the best of Accept-Language, else English.
UI strings come from the gettext catalog in ``web/translations`` (Flask-Babel); the text
composed for the dispatchers keeps English labels whatever the reporter's language.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    current_app,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import Babel, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response
from wtforms import HiddenField, StringField, TextAreaField
from wtforms.validators import AnyOf, Length

from dispatch.form_limits import RedisFormLimits
from dispatch.incidents import after_intake
from dispatch.services import Services
from rapidresponse import wording
from rapidresponse.codes import DIGITS, LETTERS
from rapidresponse.messages import catalog
from rapidresponse.models import Language, ReportChannel
from rapidresponse.reports import MAX_REPORT_CHARS, ReportDesk, Sighting, intake_rules
from web.context import services

log = logging.getLogger(__name__)

bp = Blueprint("report", __name__)

LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"
LANGUAGE_NAMES = {"en": "English", "es": "Español"}
STAFF_LANGUAGE_KEY = "lang"
TRANSLATIONS_PATH = Path(__file__).resolve().parent / "translations"

# Reports one client (one address, as an HMAC) may send: limits' syntax. The app config
# key of the same name overrides it (tests, or a deployment's create_app test_config).
REPORT_FORM_LIMIT = "10/hour"

# Per-field limits (characters); the composed report must also fit MAX_REPORT_CHARS.
MAX_LENGTHS = {
    "location": 300,
    "activity": 500,
    "size": 200,
    "uniform": 300,
    "equipment": 300,
    "time": 100,
    "other": 1000,
}
# The order of the composed text: where first, because a responder's page quotes only
# the first few dozen characters of it. English labels: they are read by dispatchers.
SALUTE_LABELS = (
    ("location", "Location"),
    ("activity", "Activity"),
    ("size", "Size"),
    ("uniform", "Uniform"),
    ("equipment", "Equipment"),
    ("time", "Time"),
)
DESCRIPTIVE = ("activity", "size", "uniform", "equipment", "other")  # at least one of these
EYEWITNESS, HEARSAY = "self", "told"
SOURCE_LINES = {
    EYEWITNESS: "Source: seen by the reporter",
    HEARSAY: "Source: someone told the reporter",
}
EYEWITNESS_CHOICES = ((EYEWITNESS, _l("I saw it myself")), (HEARSAY, _l("Someone told me")))
DEFAULT_TIME = "now"
COORDINATE_DECIMALS = 5  # about a metre: more would only be noise from the browser

_CODE = re.compile(f"^(?:[{LETTERS}][{DIGITS}]){{2,3}}$")
_SPACES = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n{3,}")


# --- languages -----------------------------------------------------------------------


def select_locale() -> str:
    """``?lang=`` if it names a language we speak, else the best of Accept-Language."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    chosen = request.args.get("lang", "")
    if chosen in LANGUAGES:
        return chosen
    remembered = session.get(STAFF_LANGUAGE_KEY)  # a staff member's choice, kept per session
    if remembered in LANGUAGES:
        return str(remembered)
    best = request.accept_languages.best_match(LANGUAGES)
    return best if best in LANGUAGES else DEFAULT_LANGUAGE


def init_babel(app: Flask) -> None:
    """Flask-Babel for the whole app, with our catalogs (compiled .mo files in git)."""
    app.config["BABEL_DEFAULT_LOCALE"] = DEFAULT_LANGUAGE
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS_PATH)
    Babel(app, locale_selector=select_locale)


def current_language() -> str:
    language = str(get_locale() or DEFAULT_LANGUAGE)
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


# --- the form ------------------------------------------------------------------------


def _control_free(text: str, keep: str) -> str:
    """Drop control and format characters (NUL breaks PostgreSQL JSON), except ``keep``."""
    return "".join(
        char for char in text if char in keep or unicodedata.category(char) not in ("Cc", "Cf")
    )


def one_line(value: Any) -> str:
    """Stripped, one line, single spaces."""
    if not isinstance(value, str):
        return ""
    return _SPACES.sub(" ", _control_free(value, keep="\t\n\r")).strip()


def multi_line(value: Any) -> str:
    """Stripped, newlines kept (as ``\\n``, as browsers count them), no runs of blank lines."""
    if not isinstance(value, str):
        return ""
    text = _control_free(value.replace("\r\n", "\n").replace("\r", "\n"), keep="\n\t")
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def coordinate(limit: float) -> Callable[[Any], str]:
    """A filter keeping a finite number within ±``limit`` and dropping anything else."""

    def clean(value: Any) -> str:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return ""
        if not math.isfinite(number) or abs(number) > limit:
            return ""
        return repr(round(number, COORDINATE_DECIMALS))

    return clean


def _too_long(name: str) -> Length:
    return Length(max=MAX_LENGTHS[name], message=_l("Please use at most %(max)d characters."))


class ReportForm(FlaskForm):  # type: ignore[misc]
    location = StringField(
        _l("Where?"),
        description=_l("Cross streets, an address, the neighborhood or the ZIP code."),
        filters=[one_line],
        validators=[_too_long("location")],
    )
    activity = TextAreaField(
        _l("What are they doing?"),
        description=_l("For example: knocking on doors, stopping cars, arresting someone."),
        filters=[multi_line],
        validators=[_too_long("activity")],
    )
    size = StringField(
        _l("How many?"),
        description=_l("People and vehicles."),
        filters=[one_line],
        validators=[_too_long("size")],
    )
    uniform = StringField(
        _l("What are they wearing?"),
        description=_l("Uniforms, vests, badges, words on their clothes or vehicles."),
        filters=[one_line],
        validators=[_too_long("uniform")],
    )
    equipment = StringField(
        _l("Vehicles and equipment"),
        description=_l("Type and color of vehicles, license plates, weapons."),
        filters=[one_line],
        validators=[_too_long("equipment")],
    )
    time = StringField(
        _l("When?"),
        description=_l("Leave empty if it is happening now."),
        filters=[one_line],
        validators=[_too_long("time")],
    )
    # Rendered as two radio buttons by the template (EYEWITNESS_CHOICES).
    eyewitness = StringField(
        _l("How do you know?"),
        filters=[one_line],
        validators=[
            AnyOf(
                (EYEWITNESS, HEARSAY),
                message=_l("Please tell us whether you saw it yourself or someone told you."),
            )
        ],
    )
    other = TextAreaField(
        _l("Anything else?"),
        description=_l("Where they went, what happened next, anything that helps."),
        filters=[multi_line],
        validators=[_too_long("other")],
    )
    latitude = HiddenField(filters=[coordinate(90)])
    longitude = HiddenField(filters=[coordinate(180)])

    def pin(self) -> tuple[float, float] | None:
        """The browser's location, when both numbers came and were sane."""
        if self.latitude.data and self.longitude.data:
            return float(self.latitude.data), float(self.longitude.data)
        return None

    def validate(self, extra_validators: Any = None) -> bool:
        valid = bool(super().validate(extra_validators))
        if self.pin() is None:
            self.latitude.data = self.longitude.data = ""  # one without the other is no pin
            if not self.location.data and not self.location.errors:
                self.location.errors.append(_("Please tell us where it is happening."))
                valid = False
        if not any(getattr(self, name).data for name in DESCRIPTIVE):
            self.activity.errors.append(_("Please tell us what you saw."))
            valid = False
        if valid and len(compose(self).text) > MAX_REPORT_CHARS:
            self.form_errors.append(
                _("Your report is too long altogether. Please shorten it a little.")
            )
            valid = False
        return valid

    def text_fields(self) -> Sequence[Any]:
        """The visible fields, in the order the page shows them."""
        return [self.location, self.activity, self.size, self.uniform, self.equipment, self.time]


@dataclass(frozen=True)
class Composed:
    text: str
    details: dict[str, str]
    eyewitness: bool


def compose(form: ReportForm) -> Composed:
    """The report as dispatchers read it (English labels) and its S.A.L.U.T.E. details."""
    details = {name: str(getattr(form, name).data or "") for name, _label in SALUTE_LABELS}
    details["time"] = details["time"] or DEFAULT_TIME
    lines = [f"{label}: {details[name]}" for name, label in SALUTE_LABELS if details[name]]
    lines.append(SOURCE_LINES.get(form.eyewitness.data, SOURCE_LINES[HEARSAY]))
    if form.other.data:
        lines.append(f"Other: {form.other.data}")
    return Composed(
        text="\n".join(lines),
        details={name: value for name, value in details.items() if value},
        eyewitness=form.eyewitness.data == EYEWITNESS,
    )


# --- the pages -----------------------------------------------------------------------


@bp.after_request
def private_pages(response: Response) -> Response:
    # A shared phone's back button or a proxy must not replay a report or its code.
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    return response


@bp.route("/report", methods=["GET", "POST"])
def form() -> ResponseReturnValue:
    filled = ReportForm()
    if request.method == "GET":
        return _form_page(filled)
    if not filled.validate():
        return _form_page(filled), 400
    found = services()
    if not _within_limit(found):  # counted only for reports that would be stored
        return _form_page(filled, notice="limited"), 429
    composed = compose(filled)
    pin = filled.pin()
    sighting = Sighting(
        text=composed.text,
        channel=ReportChannel.WEB,
        reporter_hashes=(),  # an address is no person: web reports are never linked
        latitude=pin[0] if pin else None,
        longitude=pin[1] if pin else None,
        details=composed.details,
        eyewitness=composed.eyewitness,
        place_hint=composed.details.get("location", ""),
    )
    try:
        directory = found.area_directory()
        with found.database.session() as session:
            desk = ReportDesk(session, found.cipher, intake_rules(found.settings), directory)
            intake = desk.receive(sighting)
    except SQLAlchemyError as error:
        log.error("report form: not stored (%s)", error.__class__.__name__)
        return _form_page(filled, notice="unavailable"), 503
    after_intake(found, intake)  # never raises for Redis: the sweep catches up
    return redirect(url_for("report.thanks", code=intake.report_code, lang=current_language()), 303)


@bp.get("/report/thanks")
def thanks() -> ResponseReturnValue:
    code = request.args.get("code", "")
    if not _CODE.match(code):
        return redirect(url_for("report.form", lang=current_language()), 303)
    return render_template(
        "report/thanks.html", code=code, **_page_context(switch_args={"code": code})
    )


@bp.errorhandler(CSRFError)
def expired(error: CSRFError) -> ResponseReturnValue:
    """A missing, stale or forged token: nothing is stored; the form comes back filled in,
    with a fresh token, so that someone whose page sat open too long loses nothing."""
    return _form_page(ReportForm(), notice="expired"), 400


def _form_page(form: ReportForm, notice: str | None = None) -> str:
    return render_template(
        "report/form.html",
        form=form,
        eyewitness_choices=EYEWITNESS_CHOICES,
        notice=notice,
        hotline=_hotline_number(),
        **_page_context(),
    )


@bp.get("/rights")
def rights() -> ResponseReturnValue:
    """Every know-your-rights answer of the hotline in the reader's language, in the words
    the coordinators set, and the organisation's trainings: what RIGHTS MORE links to."""
    language = Language(current_language())
    with services().database.reading() as session:
        mine = wording.wordings(session).get(language.value, {})
    default = catalog(language)
    topics = [
        mine.get(message_id) or default[message_id] for message_id in wording.RIGHTS_TOPIC_PAGES
    ]
    trainings = mine.get(wording.TRAININGS) or default[wording.TRAININGS]
    return render_template(
        "report/rights.html", topics=topics, trainings=trainings, **_page_context()
    )


def _page_context(switch_args: dict[str, str] | None = None) -> dict[str, Any]:
    language = current_language()
    other = "es" if language == "en" else "en"
    arguments: dict[str, Any] = {**(switch_args or {}), "lang": other}
    return {
        "language": language,
        "other_language": other,
        "other_language_name": LANGUAGE_NAMES[other],
        "switch_url": url_for(request.endpoint or "report.form", **arguments),
    }


def _hotline_number() -> str | None:
    """The number to text instead, when the sender is a number (not a service sid)."""
    sender = services().settings.twilio_from or ""
    return sender if sender.startswith("+") else None


def _within_limit(found: Services) -> bool:
    """At most REPORT_FORM_LIMIT per client; the key is an HMAC, never the address."""
    hashes = found.reporter_keys.hashes(request.remote_addr or "")
    if not hashes:
        return True  # Redis is down: fail open, a sighting matters more
    limits: RedisFormLimits | None = current_app.extensions.get("report_form_limits")
    if limits is None:
        limits = current_app.extensions["report_form_limits"] = RedisFormLimits(found.volatile)
    return limits.hit(current_app.config.get("REPORT_FORM_LIMIT", REPORT_FORM_LIMIT), hashes[0])
