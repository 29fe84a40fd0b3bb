"""Security headers on every response. No third-party scripts, fonts, frames or tiles."""

from __future__ import annotations

import functools

from flask import Response

from rapidresponse.mapping import tile_origin
from web.context import services


@functools.cache
def content_security_policy(tile_url: str | None) -> str:
    """The policy; a configured map tile server is the one third party images may come from."""
    images = " ".join(filter(None, ("'self' data:", tile_origin(tile_url))))
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def add_security_headers(response: Response) -> Response:
    headers = response.headers
    settings = services().settings
    headers.setdefault("Content-Security-Policy", content_security_policy(settings.map_tile_url))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(self)")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if settings.is_production:
        headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
    return response
