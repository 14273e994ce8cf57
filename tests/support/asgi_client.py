"""A synchronous client for an ASGI app in this process (httpx's ASGI transport on one event loop), for tests that
make several requests in a row; redirects are not followed, and a cookie is sent only when a test
sends its `Cookie` header."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


class AsgiClient:
    """GETs and POSTs to `app` at `base_url`, each awaited on the client's own event loop."""

    def __init__(self, app: Any, *, base_url: str = "http://dashboard", root_path: str = "") -> None:
        self.app = app
        self._runner = asyncio.Runner()
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        self._client = httpx.AsyncClient(transport=transport, base_url=base_url)

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self._forgetting(self._client.get(path, **options))

    def post(self, path: str, **options: Any) -> httpx.Response:
        return self._forgetting(self._client.post(path, **options))

    def _forgetting(self, request: Any) -> httpx.Response:
        try:
            response: httpx.Response = self._runner.run(request)
        finally:
            self._client.cookies.clear()  # a test sends a cookie itself (a `Cookie` header) when it means to
        return response

    def run(self, coroutine: Any) -> Any:
        """Await `coroutine` on the client's loop (for what reads the app directly, such as an endless stream)."""
        return self._runner.run(coroutine)

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token in a page's forms; AssertionError when the page has no form that acts."""
    found = _CSRF.search(page.text)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)
