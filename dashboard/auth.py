"""Who may act in the dashboard: a token (`EXTENDQ_DASHBOARD_TOKEN`, as a bearer header or a session cookie from
`/login`) or a user and password (`EXTENDQ_DASHBOARD_USER`/`_PASSWORD`, HTTP basic auth). With neither set the
dashboard is read-only: every action is refused.

Every form that acts carries a CSRF token, an HMAC of who is signed in under a key derived from the configured
secrets: a page from another site can make the browser send the cookie or the basic credentials, but it cannot
read or forge the token. Nothing secret is put in a page, a cookie or a log: the cookie is an HMAC as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from starlette.requests import Request

from extendq.config.settings import Settings

SESSION_COOKIE = "extendq_dashboard"
CSRF_FIELD = "csrf_token"
REALM = 'Basic realm="extendq dashboard", charset="UTF-8"'


@dataclass(frozen=True)
class Auth:
    """The dashboard's configured credentials, and the checks made against them."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Auth:
        return cls(
            token=settings.dashboard_token.get_secret_value() if settings.dashboard_token else None,
            user=settings.dashboard_user,
            password=settings.dashboard_password.get_secret_value() if settings.dashboard_password else None,
        )

    @property
    def enabled(self) -> bool:
        """Whether anyone can act at all (else the dashboard is read-only)."""
        return bool(self.token) or bool(self.user and self.password)

    @property
    def uses_token(self) -> bool:
        return bool(self.token)

    @property
    def uses_basic(self) -> bool:
        return bool(self.user and self.password)

    def identity(self, request: Request) -> str | None:
        """Who the request is from when its credentials hold: `token`, or the basic-auth user; None otherwise."""
        if not self.enabled:
            return None
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token and _same(value.strip(), self.token):
            return "token"
        if scheme.lower() == "basic" and self.uses_basic and self._basic_holds(value.strip()):
            return self.user
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and self.token and _same(cookie, self.session_value()):
            return "token"
        return None

    def accepts_token(self, offered: str) -> bool:
        """Whether `offered` (typed into the login form) is the token."""
        return bool(self.token) and _same(offered, self.token or "")

    def session_value(self) -> str:
        """The session cookie's value: proof of the token without the token."""
        return self._sign("session")

    def csrf_token(self, identity: str) -> str:
        """The CSRF token of the forms shown to `identity`."""
        return self._sign(f"csrf:{identity}")

    def csrf_holds(self, identity: str, offered: str | None) -> bool:
        return bool(offered) and _same(offered or "", self.csrf_token(identity))

    def _basic_holds(self, encoded: str) -> bool:
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return _same(user, self.user or "") & _same(password, self.password or "")

    def _sign(self, what: str) -> str:
        return hmac.new(self._key(), what.encode(), hashlib.sha256).hexdigest()

    def _key(self) -> bytes:
        material = "\0".join(("extendq-dashboard", self.token or "", self.user or "", self.password or ""))
        return hashlib.sha256(material.encode()).digest()


def _same(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode(), expected.encode())
