"""The admin API under /_emulator/ (no auth, no faults, not rate limited, not logged).

Tests and benchmarks read it to count what a client really did, reset between tests, switch
profiles at runtime and play the human reviewer.
"""

from __future__ import annotations

import os
from collections import Counter

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from extendq.emulator.endpoints import json_response
from extendq.emulator.errors import ApiProblem, bad_request, not_found
from extendq.emulator.files import check_presigned
from extendq.emulator.profiles import DEFAULT_REVIEWER, ProfileError, parse_outage, parse_profile
from extendq.emulator.runs import is_committed
from extendq.emulator.serialize import admin_body, run_json
from extendq.emulator.state import Emulator
from extendq.emulator.store import InvalidTransition
from extendq.emulator.validation import parse_json

INCLUDES = frozenset({"secrets"})  # extras `GET /_emulator/runs?include=` may add to each run


def _emulator(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


async def health(request: Request) -> Response:
    """GET /_emulator/health -> {"ok": true, "pid": n}: the pid tells a starter that its own process answers."""
    return json_response({"ok": True, "pid": os.getpid()})


async def stats(request: Request) -> Response:
    """GET /_emulator/stats -> request counts by route template and status, runs by status."""
    emulator = _emulator(request)
    at = emulator.clock()
    by_status = Counter(emulator.runs.state(run).status for run in emulator.runs)
    uncommitted = sum(1 for run in emulator.runs if not is_committed(run, at))
    log = emulator.log
    return json_response(
        {
            "requests": log.counts,
            "requests_total": log.total,
            "runs_by_status": dict(by_status),
            "runs_total": len(emulator.runs),
            "runs_uncommitted": uncommitted,
            "rate_limited": log.rate_limited,
            "dropped": log.dropped,
            "lost": log.lost,
            "faults": dict(log.faults),
            "files_total": len(emulator.files),
            "webhook_deliveries": len(emulator.webhooks.deliveries),
            "at": at,
        }
    )


async def runs(request: Request) -> Response:
    """GET /_emulator/runs[?workflowId=&batchId=&include=secrets] -> {"data": [full runs with createdAt/updatedAt]}.

    `include=secrets` adds each run's `secrets` as its create sent them (null when none were sent):
    the Extend surface never returns them, so this is how a test sees what a client delivered.
    """
    emulator = _emulator(request)
    params = request.query_params
    workflow_id, batch_id = params.get("workflowId"), params.get("batchId")
    include = {part for value in params.getlist("include") for part in value.split(",") if part}
    if not include <= INCLUDES:
        raise bad_request(f"'include' accepts only {', '.join(sorted(INCLUDES))}")
    at = emulator.clock()
    data = [
        admin_body(run, at, with_secrets="secrets" in include)
        for run in emulator.runs
        if (workflow_id is None or run.workflow_id == workflow_id) and (batch_id is None or run.batch_id == batch_id)
    ]
    return json_response({"data": data})


async def requests_log(request: Request) -> Response:
    """GET /_emulator/requests[?since=<unix time>] -> [{method, route, path, status, at, retryAfter, lost}]."""
    since = request.query_params.get("since")
    try:
        at = float(since) if since else None
    except ValueError:
        raise bad_request("'since' must be a unix time") from None
    return json_response(_emulator(request).log.since(at))


async def webhooks(request: Request) -> Response:
    """GET /_emulator/webhooks -> every delivery attempt [{eventId, eventType, runId, attempt, statusCode, ...}]."""
    return json_response(list(_emulator(request).webhooks.deliveries))


async def reset(request: Request) -> Response:
    """POST /_emulator/reset: forget runs, files, stats, requests and webhooks; keep the profile."""
    _emulator(request).reset()
    return json_response({"ok": True})


async def get_profile(request: Request) -> Response:
    """GET /_emulator/profile -> the profile in force (the shape of a profile file)."""
    return json_response(_emulator(request).profile.to_dict())


async def put_profile(request: Request) -> Response:
    """PUT /_emulator/profile: replace the profile (validated; `base: <built-in>` allowed)."""
    emulator = _emulator(request)
    try:
        profile = parse_profile(parse_json(await request.body()))
    except ProfileError as exc:
        raise bad_request(str(exc)) from None
    emulator.apply_profile(profile)
    return json_response(profile.to_dict())


async def outages(request: Request) -> Response:
    """GET /_emulator/outages -> [{"route", "status", "until", "untilIso"}] of the routes in an outage now."""
    emulator = _emulator(request)
    return json_response([window.to_dict() for window in emulator.outages.active(emulator.clock())])


async def start_outage(request: Request) -> Response:
    """POST /_emulator/outage {"route", "status"? (503), "for_s"} -> the window; `for_s: 0` ends the route's outage."""
    emulator = _emulator(request)
    try:
        outage = parse_outage(parse_json(await request.body()))
    except ProfileError as exc:
        raise bad_request(str(exc)) from None
    window = emulator.outages.start(outage.route, outage.status, emulator.clock(), outage.for_s)
    return json_response(window.to_dict())


async def get_webhook(request: Request) -> Response:
    """GET /_emulator/webhook -> {"url", "secret", "mirrors"} of webhook delivery."""
    dispatcher = _emulator(request).webhooks
    return json_response({"url": dispatcher.url, "secret": dispatcher.secret, "mirrors": list(dispatcher.mirrors)})


async def put_webhook(request: Request) -> Response:
    """PUT /_emulator/webhook {"url", "secret", "mirrors"?}: change where events go (null url stops deliveries);
    `mirrors`, a list of URLs, each event also goes to (same body and signature, delivered on its own)."""
    body = parse_json(await request.body())
    url, secret, mirrors = body.get("url"), body.get("secret"), body.get("mirrors") or []
    if url is not None and (not isinstance(url, str) or not isinstance(secret, str) or not secret):
        raise bad_request("'url' needs a string 'secret' (wss_...)")
    if not isinstance(mirrors, list) or not all(isinstance(mirror, str) and mirror for mirror in mirrors):
        raise bad_request("'mirrors' must be a list of URLs")
    _emulator(request).webhooks.configure(url, secret if url is not None else None, tuple(mirrors))
    return await get_webhook(request)


async def get_api_keys(request: Request) -> Response:
    """GET /_emulator/api_keys -> {"keys": [...]}: the API keys accepted now (empty: any key)."""
    return json_response({"keys": sorted(_emulator(request).api_keys)})


async def put_api_keys(request: Request) -> Response:
    """PUT /_emulator/api_keys {"keys": [...]}: accept only these keys from now on (a key left out is revoked: its
    requests answer 401); `[]` accepts any key again."""
    keys = parse_json(await request.body()).get("keys")
    if not isinstance(keys, list) or not all(isinstance(key, str) and key for key in keys):
        raise bad_request("'keys' must be a list of API keys")
    _emulator(request).api_keys = frozenset(keys)
    return await get_api_keys(request)


async def review(request: Request) -> Response:
    """POST /_emulator/runs/{id}/review {"decision": "approve"|"reject", "reviewer"?, "note"?} -> WorkflowRun."""
    emulator = _emulator(request)
    run_id = request.path_params["id"]
    run = emulator.runs.get(run_id)
    if run is None:
        raise not_found("Workflow run", run_id)
    body = parse_json(await request.body())
    decision, reviewer, note = body.get("decision"), body.get("reviewer", DEFAULT_REVIEWER), body.get("note")
    if decision not in ("approve", "reject"):
        raise bad_request("'decision' must be approve or reject")
    if not isinstance(reviewer, str) or (note is not None and not isinstance(note, str)):
        raise bad_request("'reviewer' and 'note' must be strings")
    try:
        emulator.runs.review(run, approved=decision == "approve", reviewer=reviewer, note=note)
    except InvalidTransition as exc:
        raise bad_request(str(exc)) from None
    return json_response(run_json(run, emulator.clock()))


async def signed_payload(request: Request) -> Response:
    """GET /_emulator/signed/{token} -> the run of a signed-URL webhook; 404 once expired."""
    payload = _emulator(request).webhooks.signed.fetch(request.path_params["token"])
    if payload is None:
        raise ApiProblem(404, "Signed URL is unknown or expired")
    return json_response(payload)


async def file_content(request: Request) -> Response:
    """GET /_emulator/files/{id}/content?expires=&signature= -> the uploaded bytes (a presigned URL)."""
    emulator = _emulator(request)
    file_id = request.path_params["id"]
    params = request.query_params
    record = emulator.files.get(file_id)
    valid = check_presigned(
        file_id, params.get("expires", ""), params.get("signature", ""), emulator.clock(), emulator.url_key
    )
    if record is None or not valid:
        raise ApiProblem(404, "Presigned URL is unknown or expired")
    return Response(record.content or record.text.encode(), media_type="application/octet-stream")


ROUTES = [
    Route("/_emulator/health", health, methods=["GET"]),
    Route("/_emulator/stats", stats, methods=["GET"]),
    Route("/_emulator/runs", runs, methods=["GET"]),
    Route("/_emulator/runs/{id}/review", review, methods=["POST"]),
    Route("/_emulator/requests", requests_log, methods=["GET"]),
    Route("/_emulator/webhooks", webhooks, methods=["GET"]),
    Route("/_emulator/reset", reset, methods=["POST"]),
    Route("/_emulator/profile", get_profile, methods=["GET"]),
    Route("/_emulator/profile", put_profile, methods=["PUT"]),
    Route("/_emulator/outages", outages, methods=["GET"]),
    Route("/_emulator/outage", start_outage, methods=["POST"]),
    Route("/_emulator/api_keys", get_api_keys, methods=["GET"]),
    Route("/_emulator/api_keys", put_api_keys, methods=["PUT"]),
    Route("/_emulator/webhook", get_webhook, methods=["GET"]),
    Route("/_emulator/webhook", put_webhook, methods=["PUT"]),
    Route("/_emulator/signed/{token}", signed_payload, methods=["GET"]),
    Route("/_emulator/files/{id}/content", file_content, methods=["GET"]),
]
