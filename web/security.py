"""Security headers on every response. No third-party scripts, fonts, frames or tiles."""

from __future__ import annotations

import functools

from flask import Response

from rapidresponse.config import Settings
from rapidresponse.mapping import tile_origin
from web.context import services


def socket_origins(socket_url: str) -> tuple[str, ...]:
    """The origins the board's socket uses when it is not the page's own: its http(s)
    origin (long-polling) and the ws(s) one (WebSocket)."""
    if not socket_url:
        return ()
    scheme, rest = socket_url.split("://", 1)
    return (socket_url, f"{'wss' if scheme == 'https' else 'ws'}://{rest}")


@functools.cache
def content_security_policy(tile_url: str | None, socket_url: str = "") -> str:
    """The policy; a configured map tile server is the one third party images may come
    from, and our own socket server the one other place the board may connect to."""
    images = " ".join(filter(None, ("'self' data:", tile_origin(tile_url))))
    connect = " ".join(("'self'", *socket_origins(socket_url)))
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            f"connect-src {connect}",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def add_security_headers(response: Response) -> Response:
    for name, value in security_headers(services().settings):
        response.headers.setdefault(name, value)
    return response


def security_headers(settings: Settings) -> list[tuple[str, str]]:
    """The headers every response carries (a view may have set its own first)."""
    headers = [
        (
            "Content-Security-Policy",
            content_security_policy(settings.map_tile_url, settings.socket_url),
        ),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=(self)"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if settings.is_production:
        headers.append(("Strict-Transport-Security", "max-age=63072000; includeSubDomains"))
    return headers
