"""The Extend boundary: builds the official SDK client and is the only place SDK and httpx errors are caught.

The SDK's own retries are off on every call (`max_retries: 0`): it would retry a create on 5xx or 429 and,
with no idempotency key in the API, create duplicate runs. extendq's retry policy decides instead.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from extend_ai import Extend
from extend_ai.core.api_error import ApiError
from extend_ai.core.http_response import HttpResponse
from extend_ai.core.jsonable_encoder import jsonable_encoder
from extend_ai.core.request_options import RequestOptions
from extend_ai.wrapper.errors import WebhookPayloadFetchError
from extend_ai.wrapper.webhooks import Webhooks

from extendq.errors import ApiUnavailable, AuthFailed, InputNotFound, RateLimited, RetryableError, RunRejected
from extendq.worker import metrics

T = TypeVar("T")
Run = dict[str, Any]
_REJECTED = {400, 404, 422}
_AUTH = {401, 402, 403}
# The largest page the list endpoint is documented to serve: a lookup after a lost create reads every run created
# since shortly before it, and each page is one more request that can fail (in a storm, about half do).
_FIND_PAGE_SIZE = 1000
# Matched against the end of the path (a base URL may have a path of its own); the most specific first.
_ENDPOINTS = [
    (re.compile(r"/workflow_runs/batch$"), "/workflow_runs/batch"),
    (re.compile(r"/workflow_runs/[^/]+/cancel$"), "/workflow_runs/{id}/cancel"),
    (re.compile(r"/workflow_runs/[^/]+$"), "/workflow_runs/{id}"),
    (re.compile(r"/workflow_runs/?$"), "/workflow_runs"),
    (re.compile(r"/files/upload$"), "/files/upload"),
    (re.compile(r"/files/[^/]+$"), "/files/{id}"),
    (re.compile(r"/files/?$"), "/files"),
]


class ExtendApi(Protocol):
    """What a job needs from Extend; runs are plain dicts with the API's wire names."""

    def create_run(self, body: dict[str, Any]) -> Run: ...

    def get_run(self, run_id: str) -> Run: ...

    def create_batch(self, body: dict[str, Any]) -> str: ...

    def cancel_run(self, run_id: str) -> Run: ...

    def upload(self, path: str, name: str | None = None) -> str: ...

    def list_runs(self, **params: Any) -> dict[str, Any]: ...

    def recent_runs(
        self, workflow_id: str, since: float, pace: Callable[[], None] | None = None
    ) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class ApiConfig:
    """How to reach Extend; built from Settings at the edge."""

    base_url: str
    api_key: str
    api_version: str
    timeout_s: float = 30.0
    workspace_id: str | None = None
    tenant: str | None = None  # the account's tenant name (None: the default account), for metrics


def build_api(config: ApiConfig) -> SdkApi:
    """The Extend API over the official SDK client for `config`; call it after fork, once per process."""
    headers = {"x-extend-workspace-id": config.workspace_id} if config.workspace_id else None
    http = httpx.Client(
        timeout=config.timeout_s,
        follow_redirects=True,
        transport=CountedTransport(httpx.HTTPTransport(), tenant=config.tenant),
    )
    client = Extend(
        token=config.api_key,
        base_url=config.base_url,
        timeout=config.timeout_s,
        extend_api_version=config.api_version,
        headers=headers,
        httpx_client=http,
    )
    return SdkApi(client, workspace_id=config.workspace_id, http=http)


class CountedTransport(httpx.BaseTransport):
    """The transport under the SDK's HTTP client: every Extend request is counted here, by endpoint and status."""

    def __init__(self, inner: httpx.BaseTransport, *, tenant: str | None = None) -> None:
        self._inner = inner
        self._tenant = tenant

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        endpoint = endpoint_of(request.method, request.url.path)
        started = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
        except Exception:
            metrics.extend_request(endpoint, "error", time.perf_counter() - started, tenant=self._tenant)
            raise
        metrics.extend_request(endpoint, str(response.status_code), time.perf_counter() - started, tenant=self._tenant)
        return response

    def close(self) -> None:
        self._inner.close()


def endpoint_of(method: str, path: str) -> str:
    """The route template of an Extend request (`GET /workflow_runs/{id}`), as the API documents it."""
    for pattern, template in _ENDPOINTS:
        if pattern.search(path):
            return f"{method} {template}"
    return f"{method} other"  # bounded label values, whatever the path


class SdkApi:
    """`ExtendApi` over the official SDK, translating its errors into extendq's tree."""

    def __init__(self, client: Extend, *, workspace_id: str | None = None, http: httpx.Client | None = None) -> None:
        self._client = client
        self._http = http
        self._options: RequestOptions = {"max_retries": 0}
        if workspace_id:
            # The SDK leaves the workspace header off create; Extend needs it with organisation keys.
            self._options = {"max_retries": 0, "additional_headers": {"x-extend-workspace-id": workspace_id}}

    def close(self) -> None:
        """Close the HTTP connections this API was given."""
        if self._http is not None:
            self._http.close()

    def create_run(self, body: dict[str, Any]) -> Run:
        """POST /workflow_runs with the wire body; the run as Extend returned it."""
        return self._send("POST", "workflow_runs", json=_create_kwargs(body), sent=True)

    def create_batch(self, body: dict[str, Any]) -> str:
        """POST /workflow_runs/batch (1-1000 inputs); the Extend `batchId`."""
        raw = self._client.workflow_runs.with_raw_response
        kwargs = {key: body[key] for key in ("workflow", "inputs", "priority") if body.get(key) is not None}
        data = _call(lambda: _json(raw.create_batch(**kwargs, request_options=self._options)), sent=True)
        return str(data["batchId"])

    def get_run(self, run_id: str) -> Run:
        """GET /workflow_runs/{id}."""
        return self._send("GET", f"workflow_runs/{quote(run_id, safe='')}", run_id=run_id)

    def list_runs(self, **params: Any) -> dict[str, Any]:
        """GET /workflow_runs with wire-named query parameters: one page, `{data, nextPageToken}`."""
        return self._send("GET", "workflow_runs", params={k: v for k, v in params.items() if v is not None})

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        run_id: str | None = None,
        sent: bool = False,
    ) -> dict[str, Any]:
        # Runs are created and read through the SDK's own HTTP client (auth, version and workspace headers,
        # base URL, timeouts) but skip its request and response models: these are the hottest calls, the
        # body is built in wire form and the run is wanted as raw JSON, and the models cost half of each
        # call's CPU.
        http = self._client._client_wrapper.httpx_client
        headers = {"content-type": "application/json"} if json is not None else None

        def call() -> dict[str, Any]:
            response = http.request(
                path, method=method, params=params, json=json, headers=headers, request_options=self._options
            )
            if not 200 <= response.status_code < 300:
                raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=_body(response))
            return _object(response.json())

        return _call(call, sent=sent, run_id=run_id)

    def cancel_run(self, run_id: str) -> Run:
        """POST /workflow_runs/{id}/cancel."""
        raw = self._client.workflow_runs.with_raw_response
        return _call(lambda: _json(raw.cancel(run_id, request_options=self._options)), run_id=run_id)

    def upload(self, path: str, name: str | None = None) -> str:
        """POST /files/upload of a local file; its Extend file id."""
        source = Path(path)
        if not source.is_file():
            raise InputNotFound(f"input path {path!r} does not exist or is not a file")
        raw = self._client.files.with_raw_response
        with source.open("rb") as handle:
            upload = (name or source.name, handle)
            data = _call(lambda: _json(raw.upload(file=upload, request_options=self._options)), sent=True)
        return str(data["id"])

    def recent_runs(
        self, workflow_id: str, since: float, pace: Callable[[], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Summaries of the workflow's runs created at or after `since`, newest first, page by page.

        `pace` is called before each page's request (the caller's rate limit: it may raise to stop the listing).
        """
        token: str | None = None
        while True:
            if pace is not None:
                pace()
            page = self.list_runs(
                workflowId=workflow_id,
                sortBy="createdAt",
                sortDir="desc",
                maxPageSize=_FIND_PAGE_SIZE,
                nextPageToken=token,
            )
            for summary in page.get("data") or []:
                if api_time(summary.get("createdAt")) < since:
                    return
                yield summary
            token = page.get("nextPageToken")
            if not token:
                return


def answers_as_emulator(base_url: str, *, timeout_s: float = 3.0) -> bool:
    """Whether `base_url`'s server is extendq's emulator: its `GET /_emulator/health` answers `{"ok": true, ...}`.

    Extend itself has no such route (404 or 401); nothing that does not answer counts.
    """
    parts = urlsplit(base_url)
    try:
        response = httpx.get(f"{parts.scheme}://{parts.netloc}/_emulator/health", timeout=timeout_s)
        body = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(body, dict) and body.get("ok") is True


def resolve_signed_payload(event: dict[str, Any]) -> dict[str, Any]:
    """An event whose payload came as a signed URL, with the payload fetched (SDK helper); others unchanged."""
    payload = event.get("payload")
    if not (isinstance(payload, dict) and payload.get("object") == "signed_data_url"):
        return event
    webhooks = Webhooks()
    signed = webhooks.parse(json.dumps(event))
    try:
        fetched = webhooks.fetch_signed_payload_sync(signed)  # type: ignore[arg-type]
    except WebhookPayloadFetchError as exc:
        raise ApiUnavailable(f"cannot fetch the signed webhook payload: {exc}") from exc
    body = fetched.get("payload") if isinstance(fetched, dict) else getattr(fetched, "payload", None)
    return {**event, "payload": jsonable_encoder(body)}


def _create_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    allowed = ("workflow", "file", "package", "priority", "metadata", "secrets")
    return {key: body[key] for key in allowed if body.get(key) is not None}


def _json(response: HttpResponse[Any]) -> dict[str, Any]:
    # The raw body, not the SDK's model: results carry the run exactly as Extend returned it.
    return _object(response._response.json())


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ApiUnavailable(f"Extend answered with a non-object body ({type(data).__name__})")
    return data


def _call(fn: Callable[[], T], *, sent: bool = False, run_id: str | None = None) -> T:
    with translate_errors(sent=sent, run_id=run_id):
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def translate_errors(*, sent: bool = False, run_id: str | None = None) -> Iterator[None]:
    """Turn SDK and httpx errors into extendq's tree; `sent` marks requests that may have landed."""
    try:
        yield
    except ApiError as exc:
        raise _from_status(exc, run_id) from exc
    except httpx.ConnectError as exc:
        raise _retryable(ApiUnavailable(f"cannot connect to Extend: {type(exc).__name__}"), landed=False) from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        error = ApiUnavailable(f"Extend request failed in transit: {type(exc).__name__}")
        raise _retryable(error, landed=sent) from exc


def _from_status(exc: ApiError, run_id: str | None) -> Exception:
    status = exc.status_code or 0
    detail = _error_detail(exc.body)
    if status == 429:
        return _retryable(RateLimited(f"Extend rate limit: {detail}", retry_after_s(exc.headers)), landed=False)
    if status in _AUTH:
        return AuthFailed(f"Extend refused the credentials ({status}): {detail}", run_id, status)
    if status in _REJECTED:
        return RunRejected(f"Extend refused the request ({status}): {detail}", run_id, status)
    error = ApiUnavailable(f"Extend answered {status}: {detail}", retry_after_s(exc.headers))
    return _retryable(error, landed=True)


def _retryable(error: RetryableError, *, landed: bool) -> RetryableError:
    error.may_have_landed = landed
    return error


def _error_detail(body: Any) -> str:
    if isinstance(body, dict):
        code, message = body.get("code"), body.get("message")
        return f"{code}: {message}" if code else str(message)
    if hasattr(body, "code") and hasattr(body, "message"):
        return f"{body.code}: {body.message}"
    return str(body)[:200]


def retry_after_s(headers: dict[str, str] | None) -> float | None:
    """Seconds from a `Retry-After` header (delta seconds or an HTTP date), when present and sane."""
    value = {k.lower(): v for k, v in (headers or {}).items()}.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def api_time(value: Any) -> float:
    """An API timestamp (ISO 8601, `Z` for UTC) in unix seconds; infinity when none is given (never before a
    window's start)."""
    if not isinstance(value, str):
        return float("inf")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
