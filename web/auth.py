"""Staff sign-in: password, then a TOTP code (or enrolment by QR code), then a session.

Flask's own session cookie is signed, not encrypted, and cannot be taken back; so it
carries only a random token whose hash names a row in ``staff_sessions``. Ending that
row (logout, a coordinator's revoke, the idle or absolute timeout) ends the session
everywhere at once, sockets included.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import segno
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from limits import RateLimitItem, parse
from limits.errors import StorageError
from redis.exceptions import RedisError
from sqlalchemy import func, select
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from dispatch.limits import moving_window
from dispatch.services import Services
from rapidresponse import audit, invites
from rapidresponse.crypto import Purpose
from rapidresponse.models import StaffRole, StaffUser, utcnow
from rapidresponse.passwords import spend_as_long_as_a_check, verify_password
from rapidresponse.staff import (
    DEVICE_DAYS,
    Permission,
    SessionRules,
    accept_code,
    begin_enrolment,
    begin_login_step,
    end_login_step,
    end_session,
    find_session,
    is_remembered_device,
    login_step_user,
    may,
    provisioning_uri,
    remember_device,
    start_session,
    totp_secret,
)
from web.context import services
from web.inputs import refuse_nul_bytes
from web.refusal import refusal
from web.report import LANGUAGE_NAMES, LANGUAGES, STAFF_LANGUAGE_KEY, current_language

STAFF_BLUEPRINTS = (
    "auth",
    "board",
    "people",
    "my",
    "simulator",
    "areas",
    "wording",
    "whatsapp_templates",
    "announcements",
    "drills",
    "keys",
)
BACKGROUND_HEADER = "X-Board-Refresh"  # see is_background_refresh
# Where to go after signing in: a path on this site, in printable ASCII without a
# backslash (browsers read one as "/"), not "//host".
SAFE_NEXT = re.compile(r"/(?!/)[\x21-\x5b\x5d-\x7e]*")

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

TOKEN_KEY = "staff_token"  # noqa: S105 - the session key under which the token lives
LOGIN_STEP_KEY = "login_step"  # the password step's one-time token (its hash is a row)
DEVICE_COOKIE = "rr_device"  # a browser that has signed in before (see the login limits)
# Who else shares a budget, as multiples of LOGIN_LIMIT: every stranger guessing at one
# account (wide, so it slows a botnet without locking the owner out: their remembered
# browser has its own budget), and one address across accounts (an office behind one
# proxy shares it).
ACCOUNT_WIDE = 10
ADDRESS_WIDE = 5
F = TypeVar("F", bound=Callable[..., ResponseReturnValue])


@dataclass(frozen=True)
class Staff:
    """Who is signed in on this request."""

    user_id: int
    email: str
    role: StaffRole
    session_id: int
    responder_id: int | None

    def may(self, permission: Permission) -> bool:
        return may(self.role, permission)

    @property
    def actor(self) -> str:
        return f"staff:{self.user_id}"


class LoginForm(FlaskForm):  # type: ignore[misc]
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])


class JoinForm(FlaskForm):  # type: ignore[misc]
    password = PasswordField(
        _l("Choose a password (at least 12 characters)"),
        validators=[DataRequired(), Length(max=1024)],
    )
    again = PasswordField(
        _l("The same password again"),
        validators=[
            DataRequired(),
            EqualTo("password", message=_l("The two passwords are not the same.")),
        ],
    )


class CodeForm(FlaskForm):  # type: ignore[misc]
    code = StringField(
        _l("Six-digit code"),
        validators=[DataRequired(), Length(max=16)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )


# --- who is signed in -----------------------------------------------------------------


def session_rules(found: Services) -> SessionRules:
    settings = found.settings
    return SessionRules(
        idle=timedelta(minutes=settings.staff_idle_minutes),
        absolute=timedelta(hours=settings.staff_session_hours),
    )


def load_staff() -> None:
    """Before every request: the signed-in staff member, or None."""
    g.staff = None
    token = session.get(TOKEN_KEY)
    if not isinstance(token, str) or request.endpoint == "static":
        return  # a stylesheet or script needs no database lookup
    found = services()
    activity = not is_background_refresh()
    # A board's own re-read only reads: no write lock for it (SQLite has one for all).
    with found.database.session() if activity else found.database.reading() as db:
        staff_session = find_session(db, token, session_rules(found), utcnow(), activity=activity)
        if staff_session is None:
            session.pop(TOKEN_KEY, None)
            return
        user = staff_session.user
        g.staff = Staff(user.id, user.email, user.role, staff_session.id, user.responder_id)


def is_background_refresh() -> bool:
    """A live page re-reading its fragment by itself (board.js says so), not a person."""
    return request.headers.get(BACKGROUND_HEADER) == "background"


def current_staff() -> Staff | None:
    return cast(Staff | None, g.get("staff"))


def signed_in() -> Staff:
    staff = current_staff()
    if staff is None:
        abort(401)
    return staff


def requires(permission: Permission) -> Callable[[F], F]:
    """Refuse a view to anyone without ``permission``: to the login page if signed out,
    403 if signed in with a role that lacks it."""

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            staff = current_staff()
            if staff is None:
                if request.method == "GET":
                    return redirect(url_for("auth.login", next=request.full_path))
                abort(401)
            if not staff.may(permission):
                abort(403)
            return view(*args, **kwargs)

        guarded.required_permission = permission  # type: ignore[attr-defined]
        return cast(F, guarded)

    return decorate


def home_for(role: StaffRole) -> str:
    if role is StaffRole.RESPONDER:
        return url_for("my.dispatches")
    return url_for("board.index")


# --- login limits ---------------------------------------------------------------------


def _limit_key(value: str) -> str:
    # Redis sees neither the email nor the address, only a keyed hash of it.
    return services().index.digest(value, Purpose.LOGIN_LIMIT)[:32]


def within_login_limit(*subjects: str | tuple[str, int]) -> bool:
    """One attempt against each subject's budget: LOGIN_LIMIT, or that many times it for
    a subject given as (subject, times).

    Fails open if Redis is unreachable: a raid is no time to lock dispatchers out, and
    argon2 plus the second factor still stand between a guesser and the board.
    """
    found = services()
    item = parse(found.settings.login_limit)
    try:
        limiter = moving_window(found.redis)
        results = [
            limiter.hit(_times(item, times), "login", _limit_key(subject))
            for subject, times in (s if isinstance(s, tuple) else (s, 1) for s in subjects)
        ]
    except (StorageError, RedisError, OSError) as error:
        log.warning("login limits unavailable (%s); allowing", error.__class__.__name__)
        return True
    return all(results)


def _times(item: RateLimitItem, times: int) -> RateLimitItem:
    return item if times == 1 else type(item)(item.amount * times, item.multiples)


def _password_budgets(email: str, remembered: str | None) -> list[str | tuple[str, int]]:
    """A browser that has signed in to this account before spends only its own budget, so
    strangers hammering the account (from one address or a thousand) cannot lock its owner
    out. Anyone else spends the budget of (account, address), the account's shared by all
    strangers, and the address's across accounts."""
    if remembered is not None:
        return [f"device:{remembered}"]
    client = request.remote_addr or ""
    return [
        f"email:{email}|addr:{client}",
        (f"email:{email}", ACCOUNT_WIDE),
        (f"addr:{client}", ADDRESS_WIDE),
    ]


# --- the pages --------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    staff = current_staff()
    if staff is not None:
        return redirect(home_for(staff.role))
    form = LoginForm()
    if request.method == "GET" or not form.validate():
        return _page("auth/login.html", form, 200 if request.method == "GET" else 400)
    email = form.email.data.strip().lower()
    if not within_login_limit(*_password_budgets(email, _remembered_device(email))):
        return _page(
            "auth/login.html", form, 429, error=_l("Too many attempts. Wait a few minutes.")
        )
    user_id = _check_password(email, form.password.data)
    if user_id is None:
        log.info("login refused: wrong email or password")
        return _page(
            "auth/login.html", form, 401, error=_l("That email and password do not match.")
        )
    _begin_code_step(user_id)
    return redirect(url_for("auth.code", next=_safe_next()))


def _remembered_device(email: str) -> str | None:
    """The device cookie, if it is a browser that has signed in to ``email`` before."""
    token = request.cookies.get(DEVICE_COOKIE)
    with services().database.session() as db:
        return token if is_remembered_device(db, token, email, utcnow()) else None


def _begin_code_step(user_id: int) -> None:
    """The password (or an invitation) was right: on to the code, with a one-time token
    whose hash names the step. A cookie minted with SECRET_KEY names no step."""
    with services().database.session() as db:
        token = begin_login_step(db, user_id, utcnow())
    _fresh_session()  # nothing from before the login survives it (session fixation)
    session[LOGIN_STEP_KEY] = token


def _check_password(email: str, password: str) -> int | None:
    with services().database.session() as db:
        user = db.scalar(select(StaffUser).where(func.lower(StaffUser.email) == email))
        if user is None or not user.active:
            spend_as_long_as_a_check(password)  # a wrong email looks like a wrong password
            return None
        return user.id if verify_password(user.password_hash, password) else None


@bp.route("/login/code", methods=["GET", "POST"])
def code() -> ResponseReturnValue:
    """The second factor; a user without one enrols here by scanning a QR code."""
    found = services()
    form = CodeForm()
    step = session.get(LOGIN_STEP_KEY)
    with found.database.session() as db:
        user_id = login_step_user(db, step, utcnow())
        user = db.get(StaffUser, user_id) if user_id is not None else None
        if user is None or not user.active or not isinstance(step, str):
            session.pop(LOGIN_STEP_KEY, None)
            return redirect(url_for("auth.login"))
        enrolling = user.totp_enrolled_at is None
        # An unfinished enrolment keeps its secret, so a reload shows the QR code scanned.
        secret = totp_secret(user, found.cipher) or begin_enrolment(user, found.cipher)
        if request.method == "GET" or not form.validate():
            db.commit()
            return _code_page(form, user, secret if enrolling else None, request.method)
        if not within_login_limit(f"code:{user.id}"):
            db.commit()
            return _code_page(form, user, secret if enrolling else None, "POST", status=429)
        if not accept_code(db, user, found.cipher, form.code.data, utcnow()):
            db.commit()
            log.info("login refused: wrong or used code")
            return _code_page(form, user, secret if enrolling else None, "POST", status=401)
        end_login_step(db, step)
        token = start_session(db, user, session_rules(found), utcnow())
        known = is_remembered_device(db, request.cookies.get(DEVICE_COOKIE), user.email, utcnow())
        device = None if known else remember_device(db, user.id, utcnow())
        audit.record(
            db,
            actor=f"staff:{user.id}",
            action="staff.enrolled" if enrolling else "staff.login",
            subject=f"staff:{user.id}",
        )
        role = user.role
    _fresh_session()
    session[TOKEN_KEY] = token
    response = redirect(_safe_next() or home_for(role))
    if device is not None:
        _set_device_cookie(response, device)
    return response


def _set_device_cookie(response: Response, token: str) -> None:
    response.set_cookie(
        DEVICE_COOKIE,
        token,
        max_age=int(timedelta(days=DEVICE_DAYS).total_seconds()),
        path=url_for("auth.login"),  # sent to the sign-in pages only
        secure=bool(current_app.config["SESSION_COOKIE_SECURE"]),
        httponly=True,
        samesite="Lax",
    )


def _code_page(
    form: CodeForm, user: StaffUser, secret: str | None, method: str, status: int | None = None
) -> ResponseReturnValue:
    qr = None
    if secret is not None:
        uri = provisioning_uri(secret, user.email)
        qr = segno.make(uri, error="m").svg_data_uri(scale=4, border=2)
    error = None
    if status == 429:
        error = _l("Too many attempts. Wait a few minutes.")
    elif method == "POST":
        error = _l("That code is not right, or was already used. Try the next one.")
    return _page(
        "auth/code.html",
        form,
        status or (200 if method == "GET" else 400),
        error=error,
        qr=qr,
        secret=secret,
    )


@bp.route("/invite/<token>", methods=["GET", "POST"])
def join(token: str) -> ResponseReturnValue:
    """A one-time invitation: set a password, then enrol the authenticator (the code step)."""
    found = services()
    form = JoinForm()
    with found.database.session() as db:
        pending = invites.open_invite(db, token, utcnow())
    if pending is None:
        return _page("auth/join.html", form, 404, gone=True)
    if request.method == "GET" or not form.validate():
        status = 200 if request.method == "GET" else 400
        return _page("auth/join.html", form, status, invite=pending)
    try:
        with found.database.session() as db:
            user_id = invites.accept(db, token, form.password.data, utcnow()).id
    except invites.InviteRefused as refused:
        error = refusal(refused)
        return _page("auth/join.html", form, 400, invite=pending, error=error)
    _begin_code_step(user_id)  # the password step is done: on to the authenticator
    return redirect(url_for("auth.code"))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    staff = current_staff()
    if staff is not None:
        with services().database.session() as db:
            end_session(db, staff.session_id, utcnow(), by_id=staff.user_id)
            audit.record(db, actor=staff.actor, action="staff.logout", subject=staff.actor)
        from web.board_live import disconnect_session

        disconnect_session(staff.session_id)
    session.clear()
    return redirect(url_for("auth.login"))


def _fresh_session() -> None:
    language = session.get(STAFF_LANGUAGE_KEY)
    session.clear()
    if language in LANGUAGES:
        session[STAFF_LANGUAGE_KEY] = language


def _safe_next() -> str | None:
    """Only a path on this site: an open redirect would make a fine phishing link."""
    target = request.args.get("next", "")
    # Printable ASCII only: browsers drop a tab or newline, so "/\t/evil.example" would
    # become "//evil.example", another site.
    if SAFE_NEXT.fullmatch(target) and not urlsplit(target).netloc:
        return target
    return None


def _page(template: str, form: FlaskForm, status: int, **context: Any) -> ResponseReturnValue:
    return render_template(template, form=form, **context), status


# Staff responses a browser may keep: the areas' outlines (public boundaries, no incident),
# under a URL that changes with the areas.
CACHEABLE_ENDPOINTS = frozenset({"board.map_areas"})


def private(response: Response) -> Response:
    """Staff pages hold incident details: never cached, by the browser or anyone between."""
    if request.endpoint in CACHEABLE_ENDPOINTS and response.status_code == 200:
        return response
    if current_staff() is not None or request.blueprint == "auth":
        response.headers["Cache-Control"] = "no-store"
    return response


def remember_language() -> None:
    """On staff pages, ``?lang=`` is remembered for the rest of the session."""
    chosen = request.args.get("lang")
    if chosen in LANGUAGES and request.blueprint in STAFF_BLUEPRINTS:
        session[STAFF_LANGUAGE_KEY] = chosen


def staff_page_context() -> dict[str, Any]:
    language = current_language()
    other = "es" if language == "en" else "en"
    endpoint = request.endpoint or "auth.login"
    switch_url = url_for(endpoint, **(request.view_args or {}), lang=other)
    return {
        "staff": current_staff(),
        "Permission": Permission,
        "language": language,
        "other_language": other,
        "other_language_name": LANGUAGE_NAMES[other],
        "switch_url": switch_url,
        "simulator_enabled": "simulator" in current_app.blueprints,
        "keys_sealable": services().settings.custody == "sealed",
    }


def refuse_nul_bytes_on_staff_pages() -> None:
    if request.blueprint in STAFF_BLUEPRINTS:
        refuse_nul_bytes()


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(refuse_nul_bytes_on_staff_pages)
    app.before_request(load_staff)
    app.before_request(remember_language)
    app.after_request(private)
    app.context_processor(staff_page_context)
